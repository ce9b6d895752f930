"""The causal check's settings: one dataclass, every field explained where it is declared."""

from __future__ import annotations

from dataclasses import dataclass, field

# Short neutral contexts per language, parallel across languages, after which many words can
# follow: steering asks how much a feature pushes its own words there. A language without an
# entry needs `causal.contexts.{lang}` in the config.
DEFAULT_CONTEXTS: dict[str, list[str]] = {
    "en": ["The", "And he said", "In that day", "I think that", "This is the"],
    "es": ["El", "Y él dijo", "En aquel día", "Creo que", "Esto es el"],
    "fr": ["Le", "Et il dit", "En ce jour-là", "Je pense que", "C'est le"],
    "de": ["Der", "Und er sprach", "An jenem Tag", "Ich denke, dass", "Das ist der"],
}


@dataclass(frozen=True)
class CausalConfig:
    """Which features are ablated and steered, on how much data; see ``causal/__init__.py``."""

    # Tested: the top_n features by `rank` of every method's score table, ...
    top_n: int = 20
    # ... and the first class_top_n of every class of the paired table (classes other than
    # dead, weak, low_support; by rank, then rho_lo, then feature id; 0: none). 0 by default:
    # the top_n of each method already holds many concept features, and 5 per class adds
    # about 2.5 min (~900 ablations) to the default run on 2 cores ...
    class_top_n: int = 0
    # ... and these feature ids (each below the SAE's d_sae).
    features: list[int] = field(default_factory=list)
    # Held-out sentences per language on which a feature is ablated: the first ones in the
    # pool's seeded order where it fires. 20 gives a bootstrap interval of about +-0.45 standard
    # deviations of the per-sentence effect, enough to tell a used feature from the controls.
    pairs_per_lang: int = 20
    # Held-out pairs (in neither the SAE's training split nor the scored split) scanned for
    # firings, in a seeded order. The scan is the model up to the hook, the cheap part; a
    # feature firing on fewer than 1 in pool_pairs sentences gets fewer than pairs_per_lang.
    pool_pairs: int = 400
    # Control features: alive features outside the tested set, matched to the firing rates of
    # the tested features (quantile by quantile; see `select.control_features`). Their effects'
    # 95th percentile per language is the bar a tested feature's effect must clear.
    controls: int = 20
    # Steering strength: this many times the feature's median (nonzero) max activation over the
    # scored pairs, added along its decoder direction at the last position of each context.
    # 4x is well above the typical firing yet within the range the top activations reach.
    alpha: float = 4.0
    # Neutral contexts per language (merged over DEFAULT_CONTEXTS: an entry replaces that
    # language's defaults). Every corpus language needs at least one.
    contexts: dict[str, list[str]] = field(default_factory=lambda: {
        k: list(v) for k, v in DEFAULT_CONTEXTS.items()})
    # A feature's words per language: the most frequent tokens at its maxima over its
    # word_pairs top-activating pairs in that language; steering measures their joint log-prob.
    words_per_lang: int = 3
    word_pairs: int = 20
    # Bootstrap resamples over sentences for the 95% percentile interval of each effect.
    bootstrap: int = 200
    # Seeds the pool order and the bootstrap (each feature and language its own stream).
    seed: int = 0
    # Rows per forward pass: sentences in the scan, and in the ablation one sentence's clean
    # run plus up to batch_size - 1 ablated copies of it (one per feature).
    batch_size: int = 32
    # Sentences are truncated to this many tokens (BOS included), as in extraction.
    max_tokens: int = 128
    # Loss positions per sentence from the feature's first firing on; None: every position to
    # the end of the sentence. A cap also shortens the forward pass (the model is causal).
    window: int | None = None
    # auto: cuda when available, else cpu (see polyglot_sae.device).
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("top_n", "pairs_per_lang", "pool_pairs", "words_per_lang", "word_pairs",
                     "bootstrap", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"causal.{name} must be >= 1, got {getattr(self, name)}")
        if self.controls < 0 or self.class_top_n < 0:
            raise ValueError("causal.controls and causal.class_top_n must be >= 0")
        if self.batch_size < 2:
            raise ValueError(f"causal.batch_size must be >= 2 (a clean row and an ablated one), "
                             f"got {self.batch_size}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"causal.window must be >= 1 or null, got {self.window}")
        if self.max_tokens < 3:
            raise ValueError(f"causal.max_tokens must be >= 3, got {self.max_tokens}")

    def contexts_for(self, langs: list[str]) -> dict[str, list[str]]:
        merged = {**DEFAULT_CONTEXTS, **self.contexts}
        return {lang: list(merged.get(lang) or []) for lang in langs}
