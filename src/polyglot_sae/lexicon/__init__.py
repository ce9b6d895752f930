"""Translation-lexicon check of feature rankings.

``freedict`` reads Debian's FreeDict dictionaries (``dict-freedict-{src}-{tgt}``, dictd format)
into a :class:`~polyglot_sae.lexicon.freedict.Lexicon` that answers "is word a a translation of
word b?" with a documented tolerance for inflection; ``check`` turns per-feature top words into a
translated/not-translated verdict and scores feature rankings by precision@k against the base
rate.
"""
