"""The lexicon check as a stage: precision@k of each ranking against a hand count, and a
language pair without a dictionary skipped with a note."""

from pathlib import Path

import polars as pl
import pytest

from polyglot_sae.lexicon.stage import LexiconCheckConfig, lexicon_check, supported_features

DICT_DIR = Path("/usr/share/dictd")
needs_freedict = pytest.mark.skipif(not (DICT_DIR / "freedict-eng-spa.index").exists(),
                                    reason="dict-freedict-eng-spa not installed")
# feature -> (en piece, es piece): 0-2 translate, 3 is a name (identical: not counted), 4 not
PIECES = {0: ("▁God", "▁Dios"), 1: ("▁king", "▁rey"), 2: ("▁day", "▁día"),
          3: ("▁David", "▁David"), 4: ("▁water", "▁rey")}


def _inputs():
    vocab = {p: i for i, p in enumerate(sorted({p for pair in PIECES.values() for p in pair}))}
    rows = [(pair, lang, f, 1.0 + pair, vocab[PIECES[f][j]])
            for f in PIECES for pair in range(3) for j, lang in enumerate(("en", "es"))]
    maxacts = pl.DataFrame(rows, orient="row", schema={
        "pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32, "value": pl.Float32,
        "token_id": pl.UInt32})
    vocab_table = pl.DataFrame({"token_id": list(vocab.values()), "token_str": list(vocab)},
                               schema_overrides={"token_id": pl.UInt32})
    ranks = {"good": [0, 1, 2, 3, 4], "bad": [4, 3, 2, 1, 0]}
    scores = {m: pl.DataFrame({"feature_id": pl.Series(order, dtype=pl.UInt32),
                               "rank": pl.Series(range(5), dtype=pl.UInt32)})
              for m, order in ranks.items()}
    return scores, maxacts, vocab_table


@needs_freedict
def test_precision_at_k_matches_a_hand_count():
    scores, maxacts, vocab = _inputs()
    table, features = lexicon_check(scores, maxacts, vocab, ["en", "es"],
                                    LexiconCheckConfig(ks=(2, 5), min_cofire=3))
    got = {(r["method"], r["k"]): r["precision"] for r in table.iter_rows(named=True)}
    assert got == {("good", 2): 1.0, ("good", 5): 0.6, ("bad", 2): 0.0, ("bad", 5): 0.6}
    assert table["base_rate"].to_list() == [0.6] * 4
    verdict = dict(features.select("feature_id", "translated").iter_rows())
    assert verdict == {0: True, 1: True, 2: True, 3: False, 4: False}


def test_a_missing_dictionary_is_a_stated_skip(tmp_path):
    scores, maxacts, vocab = _inputs()
    table, features = lexicon_check(scores, maxacts, vocab, ["en", "es"],
                                    LexiconCheckConfig(dir=str(tmp_path), min_cofire=3))
    assert table.height == 1 and table["precision"].is_null().all()
    assert "skipped" in table["note"][0] and "dict-freedict-eng-spa" in table["note"][0]
    assert features.height == 0


def test_supported_features_need_co_fired_pairs():
    _, maxacts, _ = _inputs()
    one_sided = maxacts.filter(~((pl.col("feature_id") == 4) & (pl.col("lang") == "es")
                                 & (pl.col("pair_id") > 0)))
    assert supported_features(one_sided, ["en", "es"], 3) == [0, 1, 2, 3]
    assert supported_features(one_sided, ["en", "es"], 1) == [0, 1, 2, 3, 4]


def test_words_and_base_rate_in_feature_blocks_equal_one_pass():
    """The max table in blocks of whole features (a corpus-sized table does not fit joined
    with its strings): the same top words and supported features as one pass."""
    import numpy as np

    from polyglot_sae.lexicon.check import CheckConfig, top_words_from_tokens
    from polyglot_sae.lexicon.stage import feature_blocks, words_and_support

    rng = np.random.default_rng(0)
    pieces = ["▁God", "▁Dios", "▁king", "▁rey", "▁día", "ijo", "▁,", "▁y", "<bos>", "▁12"]
    n = 4000
    maxacts = pl.DataFrame({
        "pair_id": rng.integers(0, 40, n).astype(np.uint32),
        "lang": rng.choice(["en", "es"], n),
        # a few popular features, many rare ones, some ids never used
        "feature_id": (rng.zipf(1.5, n) % 80).astype(np.uint32),
        "value": rng.gamma(2.0, 1.0, n).astype(np.float32),
        "token_id": rng.integers(0, len(pieces), n).astype(np.uint32),
    }).unique(["pair_id", "lang", "feature_id"])
    vocab = pl.DataFrame({"token_id": np.arange(len(pieces), dtype=np.uint32),
                          "token_str": pieces})
    config = LexiconCheckConfig(min_cofire=2)
    # the one-pass reference: the whole table joined with its strings, as before blocks
    whole = top_words_from_tokens(maxacts.join(vocab, on="token_id", how="left"),
                                  config=CheckConfig(top_n=config.top_words))
    base = supported_features(maxacts, ["en", "es"], 2)
    assert whole.height > 100 and 10 < len(base) < maxacts["feature_id"].n_unique()
    counts = maxacts.group_by("feature_id").len()
    for block in (150, 700, 10**9):  # the top feature alone has ~1,500 rows
        blocks = feature_blocks(maxacts.lazy(), block)
        for lo, hi in blocks:  # bounded, unless one feature alone is over the bound
            inside = counts.filter(pl.col("feature_id").is_between(lo, hi, closed="left"))
            assert inside["len"].sum() <= block or inside.height == 1
        assert len(blocks) > 1 or block == 10**9
        words, supported = words_and_support(maxacts.lazy(), vocab, ["en", "es"], config, block)
        assert supported == base, block
        assert words.drop("weight").equals(whole.drop("weight")), block
        np.testing.assert_allclose(words["weight"], whole["weight"], rtol=1e-12)
