"""Max cosine similarity between SAE dictionaries, with a random baseline, and its figures."""
