"""A paraphrase corpus: a second version of one corpus language (e.g. the World English Bible
beside the KJV), aligned to the main corpus's pairs by reference (a SWORD verse reference, or the
row number of a files corpus). See ``polyglot_sae.paraphrase.align``."""
