"""Corpora: parallel pairs from SWORD Bibles, files or OPUS; splits, shards; the paraphrase of one language; the seed's published activations."""
