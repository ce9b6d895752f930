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
    # Held-out sentences per language on which a tested feature is ablated, drawn at random
    # (seeded per feature) among the pool's sentences where it fires: first the verse pairs
    # where it fires in every language (the languages then compared on the same verses), then
    # the others. 64 gives a bootstrap interval of about +-0.25 standard deviations of the
    # per-sentence effect.
    pairs_per_lang: int = 64
    # Held-out sentences per language for each control: its first ones in the pool's (seeded)
    # order where it fires, so that the controls share sentences with each other and with the
    # whole dictionary (their clean rows are computed once). Controls only make the null: a
    # control measured on fewer sentences has a noisier mean, which widens the null
    # (conservative), and the 200 controls would otherwise be most of the ablations.
    control_sentences: int = 8
    # Held-out pairs (in neither the SAE's training split nor the scored split) scanned for
    # firings, in a seeded order. The scan is the model up to the hook, ~50 ms a sentence on
    # 2 CPU cores: a feature firing in fewer than pairs_per_lang / pool_pairs of the sentences
    # gets fewer sentences (n_sentences_{L} says how many).
    pool_pairs: int = 500
    # Which pool_pairs-sized part of the seeded permutation of the held-out pairs to scan:
    # parts 0, 1, 2 are disjoint pools (the stability check).
    pool_part: int = 0
    # Control features: alive features outside the tested set that fire in the pool in every
    # language, matched to the tested features on firing rate and activation magnitude (see
    # `select.control_features`). The p-value of a tested feature is its rank among them (see
    # `verdict`): with n controls the smallest p-value is 1 / (n + 1), and Benjamini-Hochberg
    # over ~50 tested features needs p-values well below 0.05 / 50.
    controls: int = 200
    # Benjamini-Hochberg false-discovery rate per language: q < fdr is significant.
    fdr: float = 0.05
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
    # Seeds the pool order, the sentence draws and the bootstrap (each feature and language
    # its own stream).
    seed: int = 0
    # Rows per forward pass: sentences in the scan, and in the ablation one sentence's clean
    # run plus up to batch_size - 1 ablated copies of it (one per feature).
    batch_size: int = 32
    # Sentences are truncated to this many tokens (BOS included), as in extraction.
    max_tokens: int = 256
    # Loss positions per sentence from the feature's first firing on (the window), each
    # weighted equally; None: every position to the end of the sentence. The forward pass
    # stops at the window's end (the model is causal).
    window: int | None = 8
    # KL(clean || ablated) over the clean distribution's top_k tokens exactly and the rest as
    # one block that moves by its mean logit change (`shift`: a lower bound, exact when the
    # tail moves rigidly); 0: exact over the whole vocabulary (~130x slower at 262k tokens).
    top_k: int = 2048
    # The whole dictionary (`dictionary`): every alive feature ablated on this many held-out
    # sentences per language (the pool's first ones where it fires, shared between features),
    # the verdicts' statistic averaged over them; 0: off. 2 costs ~8,000 ablations for the
    # default 2,048-latent SAE; the estimate is checked against the verdicts' measurement on
    # disjoint sentences (rank correlation in the summary and docs/results.md).
    dictionary_sentences: int = 2
    # Calibration: the tested features replaced by random alive features matched to them on
    # firing rate (each drawn among the 10 of nearest rate). Nothing singles them out, so the
    # share called `both` or `one:{L}` measures the false-positive rate of the verdicts.
    calibrate: bool = False
    # auto: cuda when available, else cpu (see polyglot_sae.device).
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("top_n", "pairs_per_lang", "control_sentences", "pool_pairs",
                     "words_per_lang", "word_pairs", "bootstrap", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"causal.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("controls", "class_top_n", "pool_part", "top_k", "dictionary_sentences"):
            if getattr(self, name) < 0:
                raise ValueError(f"causal.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.fdr < 1:
            raise ValueError(f"causal.fdr must be in (0, 1), got {self.fdr}")
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
