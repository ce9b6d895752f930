"""The hub path: fetch models, pretrained SAEs and corpora once, on the machine Snakemake runs on
(the fetch rules are localrules), into resources/ with provenance; every other job runs offline.
"""

# The fetch rules, in the order a hub run needs them (named in errors of offline jobs).
FETCH_RULES = ("fetch_model", "fetch_sae", "fetch_corpus")
