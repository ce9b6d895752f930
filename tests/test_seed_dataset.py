"""The seed-dataset importer against an independent dense computation on a small stand-in."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from polyglot_sae.atomic_io import read_metadata
from polyglot_sae.cli import main as cli_main
from polyglot_sae.errors import InputError
from polyglot_sae.score.bilingual import ScoreConfig, score_features
from polyglot_sae.corpus.seed_dataset import import_seed_dataset, write_seed_maxacts

D_SAE = 20
LANGS = ["es", "en"]
# Sentence lengths (BOS included) per row; (1, ...) is a sentence that is only its BOS.
LENGTHS = [(5, 3), (4, 4), (2, 7), (6, 1), (3, 5), (8, 6)]


def _stand_in(seed: int = 0):
    """Rows like the seed's: both languages padded to the row's length, BOS first.

    Padding positions hold large positive junk, so a max that strays past the sentence shows.
    """
    rng = np.random.default_rng(seed)
    rows, dense = [], []
    for pair, lengths in enumerate(LENGTHS):
        width = max(lengths)
        acts = np.maximum(rng.normal(-0.5, 1.0, (2, width, D_SAE)), 0).astype(np.float32)
        acts[:, 0, :] = 1e4  # BOS
        for code, length in enumerate(lengths):
            acts[code, length:, :] = 50.0 + rng.random((width - length, D_SAE))
        rows.append({
            "sae_features": acts.tolist(),
            "str_tokens": {lang: [f"<{lang}{pair}:{t}>" for t in range(n)]
                           for lang, n in zip(LANGS, lengths)},
            "input_ids": {lang: list(range(n)) for lang, n in zip(LANGS, lengths)},
        })
        dense.append(acts)
    return rows, dense


def _reference(dense, keep_padding=False):
    """(n_pairs, 2, d) max over tokens 1 .. len-1 (or the whole row but BOS)."""
    out = np.zeros((len(dense), 2, D_SAE), dtype=np.float32)
    for pair, (acts, lengths) in enumerate(zip(dense, LENGTHS)):
        for code, length in enumerate(lengths):
            stop = acts.shape[1] if keep_padding else length
            if stop > 1:
                out[pair, code] = acts[code, 1:stop].max(axis=0)
    return out


def _densify(table: pl.DataFrame, n_pairs: int):
    out = np.zeros((n_pairs, 2, D_SAE), dtype=np.float32)
    codes = table["lang"].replace_strict(LANGS, [0, 1], return_dtype=pl.Int64).to_numpy()
    out[table["pair_id"].to_numpy(), codes, table["feature_id"].to_numpy()] = table["value"].to_numpy()
    return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    import datasets

    datasets.disable_progress_bars()
    rows, dense = _stand_in()
    path = tmp_path_factory.mktemp("seed") / "ds"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path, dense


def test_max_table_matches_dense_reference(stand_in):
    path, dense = stand_in
    table, meta = import_seed_dataset(local_path=path)
    assert table.schema == pl.Schema({"pair_id": pl.UInt32, "lang": pl.String,
                                      "feature_id": pl.UInt32, "value": pl.Float32})
    assert (table["value"] > 0).all()
    assert table.sort("pair_id", "lang", "feature_id").equals(table)
    np.testing.assert_array_equal(_densify(table, len(LENGTHS)), _reference(dense))
    # BOS (1e4) and the padding junk (>= 50) never leak in.
    assert table["value"].max() < 50
    # The BOS-only sentence (row 3, en) contributes nothing.
    assert table.filter((pl.col("pair_id") == 3) & (pl.col("lang") == "en")).height == 0
    assert meta["n_pairs"] == len(LENGTHS) and meta["d_sae"] == D_SAE
    assert meta["langs"] == LANGS and "diegomezp" in meta["source"]
    assert meta["padding_changed_cells"] > 0


def test_keep_padding_is_the_published_arithmetic(stand_in):
    path, dense = stand_in
    table, meta = import_seed_dataset(local_path=path, keep_padding=True)
    np.testing.assert_array_equal(_densify(table, len(LENGTHS)), _reference(dense, True))
    assert meta["keep_padding"] is True and meta["padding_changed_cells"] is None


def _blog_bi_score(q, beta_rank):
    """The blog's published JSD/Idaf/beta code, transcribed to numpy (q: pairs x 2 x d)."""
    es, en = q[:, 0].astype(np.float64), q[:, 1].astype(np.float64)

    def softmax(x):
        e = np.exp(x - x.max(axis=0))
        return e / e.sum(axis=0)

    p, r = softmax(es * 100 / es.max()), softmax(en * 100 / en.max())
    m = 0.5 * (p + r)
    jsd = 0.5 * ((m * (np.log(m) - np.log(p))).mean(axis=0)
                 + (m * (np.log(m) - np.log(r))).mean(axis=0))
    count = (q > 0).sum(axis=(0, 1))
    with np.errstate(divide="ignore"):
        idaf = -np.where(count < 10, 1.0, q.shape[0] * 2 / count)
    dead = ((es > 0).sum(0) == 0) | ((en > 0).sum(0) == 0)
    beta = -(np.sort(jsd[~dead])[beta_rank] - jsd[~dead].min()) / (
        idaf[~dead].max() - idaf[~dead].min())
    return jsd + beta * idaf, dead


def test_seed_scoring_of_the_import(stand_in):
    path, dense = stand_in
    table, meta = import_seed_dataset(local_path=path, keep_padding=True)
    scores = score_features(table, n_pairs=meta["n_pairs"], d_sae=meta["d_sae"], langs=LANGS,
                            config=ScoreConfig(method="seed", beta_rank=3))
    assert scores.height == D_SAE
    bi, dead = _blog_bi_score(_reference(dense, keep_padding=True), beta_rank=3)
    np.testing.assert_array_equal(scores["dead"].to_numpy(), dead)
    assert (~dead).sum() > 3  # beta_rank 3 is inside the alive features
    np.testing.assert_allclose(scores["bi_score"].to_numpy()[~dead], bi[~dead], rtol=1e-9)


def test_written_table_scores_through_the_cli(stand_in, tmp_path):
    path, _ = stand_in
    out = tmp_path / "seed.maxacts.parquet"
    table, meta = write_seed_maxacts(out, local_path=path)
    assert pl.read_parquet(out).equals(table)
    assert read_metadata(out) == meta
    scores_path = tmp_path / "scores.parquet"
    rc = cli_main(["score", str(out), "--d-sae", str(D_SAE), "--langs", "es,en",
                   "--method", "seed", "--beta-rank", "3", "--out", str(scores_path)])
    assert rc == 0
    expected = score_features(table, n_pairs=meta["n_pairs"], d_sae=D_SAE, langs=LANGS,
                              config=ScoreConfig(method="seed", beta_rank=3))
    assert pl.read_parquet(scores_path).equals(expected)


def test_dataset_dict_split(tmp_path):
    import datasets

    rows, dense = _stand_in(seed=1)
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2])}).save_to_disk(str(path))
    table, meta = import_seed_dataset(local_path=path, split="train")
    assert meta["n_pairs"] == 2
    np.testing.assert_array_equal(_densify(table, 2), _reference(dense[:2]))
    with pytest.raises(InputError) as err:
        import_seed_dataset(local_path=path, split="test")
    assert err.value.field == "split"


def test_missing_sae_features_names_the_field(tmp_path):
    import datasets

    path = tmp_path / "bad"
    datasets.Dataset.from_list([{"str_tokens": {"es": ["a"], "en": ["b"]}}]).save_to_disk(str(path))
    with pytest.raises(InputError) as err:
        import_seed_dataset(local_path=path)
    assert err.value.field == "sae_features"
    assert "sae_features" in str(err.value)


def test_str_tokens_longer_than_activations_is_an_error(tmp_path):
    import datasets

    path = tmp_path / "long"
    row = {"sae_features": [[[0.0, 1.0]], [[0.0, 1.0]]],
           "str_tokens": {"es": ["<bos>", "a", "b"], "en": ["<bos>"]}}
    datasets.Dataset.from_list([row]).save_to_disk(str(path))
    with pytest.raises(InputError) as err:
        import_seed_dataset(local_path=path)
    assert err.value.field.startswith("str_tokens")


def test_import_command_writes_the_same_table(stand_in, tmp_path):
    path, _ = stand_in
    out = tmp_path / "cli.parquet"
    assert cli_main(["import-seed-dataset", "--out", str(out), "--local-path", str(path)]) == 0
    table, meta = import_seed_dataset(local_path=path)
    assert pl.read_parquet(out).equals(table) and read_metadata(out)["n_pairs"] == meta["n_pairs"]
