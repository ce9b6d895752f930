"""The stages of the width benchmark (``width_bench``): each builds what it needs beyond the
shared synthetic inputs, calls the stage's library function and returns a note. Run one per
child process, so a stage's peak resident memory is its own.

Shared inputs (``prepare``), in the pipeline's formats: extraction shards and token tables
(``synthetic_shards``: ~``tokens`` tokens per sentence, ``l0`` distinct features per token over
``d_sae`` latents, so the rows do not grow with d_sae; only per-feature arrays do), the
corpus texts, word links (word i of one side linked to word i of the other), and a
token-to-word map of one word per token.
"""

from __future__ import annotations

import json
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..atomic_io import write_parquet
from .synthetic_shards import LANGS, ShardShape, write_shards

VOCAB = 262_144  # Gemma-3's vocabulary: the token ids of the synthetic tables
D_MODEL = 640  # Gemma-3-270M's residual width


@dataclass(frozen=True)
class Inputs:
    work: Path
    d_sae: int
    pairs: int

    def acts(self) -> list[Path]:
        return sorted((self.work / "acts").glob("*.parquet"))

    def tokens(self) -> list[Path]:
        return sorted((self.work / "tokens").glob("*.parquet"))

    def __getattr__(self, name: str) -> Path:  # the stages' files: maxacts, scores_exact, ...
        return self.work / f"{name}.parquet"


def prepare(work: Path, d_sae: int, pairs: int, shard_pairs: int, l0: int, tokens: int) -> str:
    """The shared synthetic inputs into ``work``; a line saying what they are."""
    shape = ShardShape(d_sae=d_sae, l0=l0, tokens=tokens)
    shards, n_tok = write_shards(work / "acts", pairs, shard_pairs, shape)
    rng = np.random.default_rng(7)
    zipf = 1.0 / np.arange(1, VOCAB + 1)
    cdf = np.cumsum(zipf / zipf.sum())
    texts, links = [], []
    (work / "tokens").mkdir(exist_ok=True)
    for shard in shards:
        pos = (pl.scan_parquet(shard).select("pair_id", "lang", "token_pos").unique()
               .collect())
        bos = pos.select("pair_id", "lang").unique().with_columns(
            token_pos=pl.lit(0, pl.UInt16))
        tok = pl.concat([bos, pos]).sort("pair_id", "lang", "token_pos")
        ids = np.searchsorted(cdf, rng.random(tok.height)).astype(np.uint32)
        ids[tok["token_pos"].to_numpy() == 0] = 2  # Gemma's BOS
        tok = tok.with_columns(token_id=pl.Series(ids, dtype=pl.UInt32)).with_columns(
            token_str=pl.format("w{}", "token_id"))
        write_parquet(tok, work / "tokens" / shard.name, {"d_sae": d_sae})
        words = (tok.filter(pl.col("token_pos") > 0).group_by("pair_id", "lang", maintain_order=True)
                 .agg(pl.col("token_str").str.join(" ").alias("text"), pl.len().alias("n")))
        texts.append(words.select("pair_id", "lang", "text"))
        n = words.pivot("lang", index="pair_id", values="n").with_columns(
            k=pl.min_horizontal(*LANGS))
        k = n["k"].to_numpy().astype(np.int64)
        word = np.concatenate([np.arange(m) for m in k]).astype(np.uint16)
        links.append(pl.DataFrame({"pair_id": np.repeat(n["pair_id"].to_numpy(), k),
                                   "word_a": word, "word_b": word}))
    write_parquet(pl.concat(texts), work / "corpus.parquet", {})
    link = pl.concat(links).with_columns(
        [pl.lit(0, pl.UInt32).alias(c) for c in ("start_a", "start_b")]
        + [pl.lit(1, pl.UInt32).alias(c) for c in ("end_a", "end_b")])
    write_parquet(link, work / "links.parquet", {})
    return (f"{pairs:,} pairs in {len(shards)} shards, {n_tok:,} tokens, L0 {l0}, "
            f"{sum(pl.scan_parquet(s).select(pl.len()).collect().item() for s in shards):,} "
            "activation rows")


def reduce(x: Inputs, args) -> str:
    from ..activations.reduce import sentence_lengths, vocab, write_max_table

    rows, meta = write_max_table(x.acts(), x.maxacts, x.tokens())
    write_parquet(sentence_lengths(x.tokens()), x.lengths, meta)
    write_parquet(vocab(x.tokens()), x.vocab, meta)
    return f"{rows:,} max-table rows"


def score(x: Inputs, args) -> str:
    from ..score.bilingual import ScoreConfig
    from ..score.files import score_file
    from ..score.null import NullConfig

    s = score_file(x.maxacts, x.scores_exact, langs=LANGS, d_sae=x.d_sae,
                   config=ScoreConfig(method="exact"),
                   null=NullConfig(permutations=args.permutations))
    return (f"exact, {args.permutations} permutations: {s['rank'].count():,} alive, "
            f"{int((s['q_value'] < 0.05).sum())} at q < 0.05")


def paired(x: Inputs, args) -> str:
    from ..paired.stage import paired_stats_file
    from ..paired.stats import PairedConfig

    s = paired_stats_file(x.maxacts, x.paired_stats, langs=LANGS,
                          config=PairedConfig(bootstrap=args.bootstrap), lengths_path=x.lengths,
                          vocab_path=x.vocab, d_sae=x.d_sae)
    return f"B={args.bootstrap}: {int(s['rho_lo'].is_not_null().sum()):,} features with a bound"


def words(x: Inputs, args) -> str:
    from ..paired.word_level import word_level_stats

    texts = pl.read_parquet(x.corpus)
    shards = []
    for acts, tok in zip(x.acts(), x.tokens()):
        tokmap = (pl.read_parquet(tok, columns=["pair_id", "lang", "token_pos"])
                  .filter(pl.col("token_pos") > 0)
                  .with_columns(word=(pl.col("token_pos") - 1).cast(pl.UInt16)))
        act = pl.scan_parquet(acts).with_columns(pl.col("lang").cast(pl.String))
        shards.append((act, tokmap))
    stats, _ = word_level_stats(shards, {tuple(LANGS): pl.read_parquet(x.links)}, texts,
                                scored=texts["pair_id"].unique().to_numpy(), d_sae=x.d_sae,
                                langs=LANGS, replicates=args.bootstrap)
    write_parquet(stats, x.word_stats, {})
    return f"B={args.bootstrap}: {int(stats['r_word'].is_not_null().sum()):,} features with r_word"


def classes(x: Inputs, args) -> str:
    from ..paired.classes import ClassConfig
    from ..paired.stage import classify_file

    # Without the word level (a run that skipped it, as the pipeline may), the verse-level
    # classes: the stages after this one then need not wait for the slowest stage.
    words = x.word_stats if x.word_stats.exists() else None
    s = classify_file(x.paired_stats, x.scores_paired, langs=LANGS, classes=ClassConfig(),
                      word_stats_path=words)
    return f"{s['rank'].count():,} ranked{'' if words else ' (no word level)'}"


def lexicon(x: Inputs, args) -> str:
    from ..lexicon.stage import LexiconCheckConfig, lexicon_check

    scores = {m: pl.read_parquet(p) for m, p in (("exact", x.scores_exact),
                                                 ("paired", x.scores_paired)) if p.exists()}
    ranked = ", ".join(scores) or "none"
    if not scores:  # the rankings are lists, the max table is what grows: measure it alone
        ids = pl.scan_parquet(x.maxacts).select(pl.col("feature_id").unique()).collect()
        scores = {"feature_order": ids.sort("feature_id").with_row_index("rank")}
        ranked = "feature order (no score files yet)"
    # Word-like pieces ("▁" and four letters from the token id): the tables' "w123" are no
    # words to the check, which would then drop every row before its group-by.
    vocab = pl.read_parquet(x.vocab)
    ids = vocab["token_id"].to_numpy().astype(np.int64)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    spelled = ["\u2581" + "".join(c) for c in
               letters[np.stack([ids // 26**k % 26 for k in range(4)], axis=1)]]
    vocab = vocab.with_columns(token_str=pl.Series(spelled))
    table, feats = lexicon_check(scores, pl.scan_parquet(x.maxacts), vocab, LANGS,
                                 LexiconCheckConfig(), block_rows=args.lexicon_block_rows)
    return (f"{table.height} table rows, {feats.height} feature verdicts (synthetic words); "
            f"blocks of {args.lexicon_block_rows:,} rows; rankings: {ranked}")


def pages(x: Inputs, args) -> str:
    from ..report.page_data import FeaturePagesConfig, FeaturePagesInput
    from ..report.pages import build_feature_pages

    inputs = FeaturePagesInput.from_files(x.scores_paired, x.acts(), x.tokens(), LANGS,
                                          name="width")
    out = build_feature_pages(inputs, x.work / "pages", FeaturePagesConfig())
    return f"{len(list((out / 'features').glob('*.html')))} pages"


def summary(x: Inputs, args) -> str:
    # write_summary wants a whole run's files (corpus stats, monolinguality, top lists, ...);
    # its width-dependent parts are these, over the max table and the full score tables.
    from ..paired import report as paired_report
    from ..report import summary as s

    quality = {"hook": "blocks.12.hook_resid_post", "eval_pairs": 60, "per_language": {}}
    exact, pair = pl.read_parquet(x.scores_exact), pl.read_parquet(x.scores_paired)
    lines = s._quality_lines(quality, str(x.maxacts), x.d_sae)
    lines += [s._headline(exact, "exact"), *s._significant_top(exact),
              paired_report.headline(pair, LANGS), s._agreement(pair, exact, 100)]
    (x.work / "summary.md").write_text("\n".join(lines))
    return f"{len(lines)} lines"


def _tiny_model(work: Path):
    """A 2-layer random model of Gemma-3-270M's residual width (d_model 640) with the
    byte-level tokenizer: the SAE, not the model, is what grows with d_sae."""
    from ..model.load import ModelConfig, load_model, prepare_model

    tiny = {"d_model": D_MODEL, "n_heads": 4, "d_head": 160, "d_mlp": 1024, "n_layers": 2,
            "seed": 1}
    return load_model(prepare_model(ModelConfig(source="tiny", tiny=tiny), work / "model"))


@functools.lru_cache(maxsize=1)
def _sae(d_sae: int):
    """A JumpReLU SAE of full width with random weights; cached, so that the child can build
    it before the watched call (sae-lens' init peaks at 1.5x the weights: 8.1 GiB at 1M, a
    cost of this bench, not of the stage, which is handed a loaded SAE)."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    torch.manual_seed(0)
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_MODEL, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.normal_(0, 1.0 / D_MODEL**0.5)
        sae.W_dec.normal_(0, 1.0 / d_sae**0.5)
        # a threshold that lets ~60 latents of d_sae fire per token on unit-variance input
        sae.threshold.fill_(float(torch.distributions.Normal(0, 1).icdf(
            torch.tensor(1 - 60 / d_sae))))
    return sae


def _texts(n_pairs: int) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
    return pl.DataFrame({"pair_id": np.repeat(np.arange(n_pairs), 2).astype(np.uint32),
                         "lang": list(LANGS) * n_pairs,
                         "text": ["".join(rng.choice(letters, 39)) for _ in range(2 * n_pairs)]})


def _resid_scale(model, sae, hook: str) -> None:
    """Scale W_enc so the tiny model's residual reads as unit variance (then the threshold
    gives the intended L0)."""
    import torch

    with torch.no_grad():
        _, cache = model.run_with_cache(model.to_tokens(["a sample sentence"]), names_filter=hook)
        sae.W_enc.div_(float(cache[hook].std()))


def extract(x: Inputs, args) -> str:
    from ..activations.extract import ExtractConfig, write_sparse_activations
    from ..activations.forward import tokenize
    from ..model.load import special_token_ids

    model, sae, hook = _tiny_model(x.work), _sae(x.d_sae), "blocks.1.hook_resid_post"
    _resid_scale(model, sae, hook)
    cfg = ExtractConfig(forward="transformer_lens", max_tokens=128, device="cpu")
    sentences = tokenize(model.tokenizer, _texts(args.extract_pairs), cfg.max_tokens)
    rows = write_sparse_activations(model, sae, hook, sentences, cfg, x.work / "ex.parquet",
                                    {}, special=special_token_ids(model.tokenizer))
    n_tok = sum(len(s.token_ids) - 1 for s in sentences)
    return (f"{args.extract_pairs} pairs, {n_tok:,} tokens, batch 32, L0 {rows / n_tok:.0f}; "
            f"tiny 2-layer d_model-640 model")


def sae_eval(x: Inputs, args) -> str:
    from ..activations.extract import ExtractConfig
    from ..activations.sae_eval import evaluate_sae

    model, sae, hook = _tiny_model(x.work), _sae(x.d_sae), "blocks.1.hook_resid_post"
    _resid_scale(model, sae, hook)
    cfg = ExtractConfig(forward="transformer_lens", max_tokens=128, device="cpu")
    q = evaluate_sae(model, sae, hook, _texts(args.eval_pairs), cfg)
    return (f"{args.eval_pairs} pairs, batch 8; L0 en {q['en']['l0']:.0f}; tiny 2-layer "
            "d_model-640 model")


def logit_lens(x: Inputs, args) -> str:
    import torch

    from ..logit_lens import core as ll
    from .logit_lens_bench import _random_sets

    g = torch.Generator().manual_seed(0)
    v = args.lens_vocab
    lens = ll.UnembedLens(W_U=torch.randn(D_MODEL, v, generator=g) / D_MODEL**0.5,
                          gain=torch.rand(D_MODEL, generator=g) + 0.5, center=False,
                          bias=torch.zeros(v), eps=1e-6, norm="RMS", processing="random",
                          softcap=None)
    W_dec = torch.randn(x.d_sae, D_MODEL, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    sets = _random_sets(v, 0) if v >= 130_000 else _small_sets(v)
    result = ll.analyse(lens, W_dec, token_sets=sets)
    return (f"vocab {v:,} of 262,144 (time x{VOCAB / v:.0f} at full vocab), "
            f"{result.stats.height:,} features")


def _small_sets(v: int):
    from ..logit_lens import token_sets as ts

    rng = np.random.default_rng(0)
    masks = np.zeros((3, v), dtype=bool)
    for row, frac in enumerate((0.01, 0.1, 0.4)):
        masks[row, rng.choice(v, int(frac * v), replace=False)] = True
    return ts.TokenSets(("s1", "s10", "s40"), masks, np.ones(v, dtype=bool))


def mcs(x: Inputs, args) -> str:
    from ..mcs.baseline import random_dictionary
    from ..mcs.core import max_cosine_similarity

    # B: a full dictionary of d_sae rows; A: its first mcs_rows rows. Memory holds both whole;
    # compute is rows x d_sae, so the full d_sae x d_sae comparison takes d_sae / rows times
    # as long (the ladder's reference comparisons are of this shape).
    # Past 2 GiB per dictionary, A is built with only its compared rows, to keep this run
    # under the shared machine's memory; the stage itself would hold A whole as well.
    whole = x.d_sae * D_MODEL * 4 <= 2 << 30
    b = random_dictionary(x.d_sae, D_MODEL, 0)
    a = random_dictionary(x.d_sae if whole else args.mcs_rows, D_MODEL, 1)
    best, _ = max_cosine_similarity(a[: args.mcs_rows], b, device="cpu")
    return (f"{args.mcs_rows:,} of {x.d_sae:,} rows against {x.d_sae:,} (time x"
            f"{x.d_sae / args.mcs_rows:.0f} for all); A held "
            f"{'whole' if whole else 'only its compared rows'}; mean MCS {best.mean():.3f}")


STAGES = {"reduce": reduce, "score": score, "paired": paired, "words": words, "classes": classes,
          "lexicon": lexicon, "pages": pages, "summary": summary, "extract": extract,
          "sae_eval": sae_eval, "logit_lens": logit_lens, "mcs": mcs}
# Stages whose inputs grow with the corpus (the others depend only on d_sae).
CORPUS_STAGES = ("reduce", "score", "paired", "words", "classes", "lexicon", "pages", "summary")


def result_line(stage: str, wall: float, peak: int, before: int, note: str) -> str:
    return "WIDTH_RESULT " + json.dumps({"stage": stage, "wall": wall, "peak": peak,
                                         "before": before, "note": note})
