"""The Python API on the tiny DAG: docs/api.md's example runs as written, and its answers are
the files' own."""

from __future__ import annotations

import contextlib
import io
import re
import shutil

import numpy as np
import polars as pl
import pytest
from conftest import ROOT

from polyglot_sae import open_run
from polyglot_sae.errors import InputError

pytestmark = pytest.mark.integration


def _example() -> str:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_docs_example_runs(tiny_dag):
    workdir, _ = tiny_dag
    code = _example().replace('"results/default"', repr(str(workdir / "results" / "tiny")))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/api.md", "exec"), {})  # the documented example, as written
    assert "features among the top 20 firing on" in out.getvalue()


def test_features_join_every_stage(tiny_dag, tmp_path):
    workdir, _ = tiny_dag
    res = workdir / "results" / "tiny"
    run = open_run(res)
    assert run.saes == ["tiny-sae"] and run.langs == ["en", "es"]
    assert run.config["run"] == "tiny" and run.missing("tiny-sae") == []
    table = run.features("tiny-sae")
    paired = pl.read_parquet(res / "scores" / "tiny-sae.paired.parquet")
    exact = pl.read_parquet(res / "scores" / "tiny-sae.exact.parquet")
    assert table.height == paired.height == 48
    assert table.select(paired.columns).equals(paired)  # the paired columns as they are
    assert table["exact_bi_score"].equals(exact["bi_score"].alias("exact_bi_score"))
    causal = pl.read_parquet(res / "causal" / "tiny-sae.parquet").filter(~pl.col("is_control"))
    got = table.filter(pl.col("causal_verdict").is_not_null())
    assert sorted(got["feature_id"].to_list()) == sorted(causal["feature_id"].to_list())
    # the whole dictionary's ablation: every feature's row, by feature id
    whole = pl.read_parquet(res / "causal" / "tiny-sae.dictionary.parquet")
    joined = table.join(whole, on="feature_id")
    assert joined.height == table.height and joined["n_dict_en"].sum() > 0
    for lang in ("en", "es"):
        a, b = joined[f"ablation_kl_{lang}"].to_numpy(), joined[f"kl_{lang}"].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(a, b, equal_nan=True)
    f = run.feature("tiny-sae", int(paired.sort("rank")["feature_id"][0]))
    assert f.scores["rho"] == paired.sort("rank")["rho"][0]
    html = f._repr_html_()
    assert f"<h1>Feature {f.feature_id}</h1>" in html and "<style>" in html
    # a run without the causal check still opens and says so
    partial = tmp_path / "tiny"
    shutil.copytree(res / "scores", partial / "scores")
    assert "causal" in open_run(partial).missing("tiny-sae")
    assert "causal_verdict" not in open_run(partial).features("tiny-sae").columns
    with pytest.raises(InputError, match="no SAE"):
        run.features("other")
