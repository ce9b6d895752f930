"""Logit-lens statistics of decoder directions, token-set enrichment, the join with the scores, and figures."""
