"""The size ablation's intervals: subsets of distinct pairs cover a new dataset of the same
size at their stated rate (m - 1)/(m + 1), and the full size is its own interval."""

import numpy as np
import polars as pl

from polyglot_sae.subsample import SubsampleConfig, renumber, size_ablation


def _mean_score(values: np.ndarray):
    """A toy method on a population of per-pair values: 'found' = round(100 * mean), and a
    ranking of 3 'features' that depends on the sample."""

    def score(ids: np.ndarray) -> pl.DataFrame:
        m = values[ids].mean()
        order = [0, 1, 2] if m > values.mean() else [2, 1, 0]
        return pl.DataFrame({"feature_id": order, "rank": [0, 1, 2], "found": [round(100 * m)] * 3})

    return score


def test_interval_covers_a_new_dataset_at_its_stated_rate():
    rng = np.random.default_rng(0)
    population = rng.exponential(size=2000)
    m, size, trials = 9, 100, 1000
    score = _mean_score(population)
    hits = 0
    for t in range(trials):
        table = size_ablation(score, lambda s: int(s["found"][0]), pair_ids=np.arange(2000),
                              config=SubsampleConfig(sizes=(size,), seed=t, subsets=m, top_k=1))
        row = table.row(0, named=True)
        fresh = round(100 * population[rng.choice(2000, size, replace=False)].mean())
        hits += row["n_found_lo"] <= fresh <= row["n_found_hi"]
    # (m - 1)/(m + 1) = 0.8, plus ties from the rounding; binomial sd over 1000 trials ~0.013
    assert abs(hits / trials - (m - 1) / (m + 1)) < 0.04


def test_full_size_is_its_own_interval_and_prefixes_are_nested():
    seen = []
    values = np.linspace(0, 1, 50)

    def score(ids):
        seen.append(np.array(ids))
        return _mean_score(values)(ids)

    table = size_ablation(score, lambda s: int(s["found"][0]), pair_ids=np.arange(50),
                          config=SubsampleConfig(sizes=(10, 20), subsets=3, top_k=1))
    full = table.filter(pl.col("n_pairs") == 50).row(0, named=True)
    assert full["n_found_lo"] == full["n_found"] == full["n_found_hi"] == 50
    assert table["n_pairs"].to_list() == [10, 20, 50]
    # every subset holds distinct pairs; the prefixes are nested in the full order
    assert all(len(np.unique(ids)) == len(ids) for ids in seen)
    full_order = seen[0]
    assert any(np.array_equal(ids, full_order[:10]) for ids in seen)


def test_renumber_keeps_columns_and_orders_ids():
    table = pl.DataFrame({"pair_id": pl.Series([5, 7, 9], dtype=pl.UInt32), "v": [1, 2, 3]})
    out = renumber(table, np.array([9, 5], dtype=np.uint32))
    assert out.columns == ["pair_id", "v"]
    assert sorted(out.rows()) == [(0, 3), (1, 1)]
