"""Word alignment of the corpus (eflomal), word segmentation and the tokens-to-words map."""
