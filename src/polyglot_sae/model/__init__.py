"""Models and SAEs: loading (offline Gemma-3-270M, TransformerLens), the lean forward, SAE sources and JumpReLU training."""
