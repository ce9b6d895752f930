import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.score.bilingual import ScoreConfig, score_features

CLI = str(Path(sys.executable).with_name("polyglot-sae"))


def _maxacts(n_pairs=40, d_sae=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(p, lang, f, float(rng.gamma(2.0, 3.0)))
            for p in range(n_pairs) for lang in ("en", "es") for f in range(d_sae)
            if rng.random() < (0.3 if f < 25 else 0.0)]
    p, l, f, v = zip(*rows)
    return pl.DataFrame({"pair_id": p, "lang": l, "feature_id": f, "value": v},
                        schema={"pair_id": pl.UInt32, "lang": pl.String, "feature_id": pl.UInt32,
                                "value": pl.Float32})


def test_score_cli_writes_the_library_result(tmp_path):
    table = _maxacts()
    src = write_parquet(table, tmp_path / "maxacts.parquet", {"n_pairs": 40, "d_sae": 30})
    for method in ("seed", "exact"):
        out = tmp_path / f"scores.{method}.parquet"
        proc = subprocess.run([CLI, "score", str(src), "--d-sae", "30", "--langs", "en,es",
                               "--method", method, "--beta-rank", "5", "--out", str(out)],
                              capture_output=True, text=True, check=True)
        assert "25 alive" in proc.stdout
        expected = score_features(table, n_pairs=40, d_sae=30, langs=["en", "es"],
                                  config=ScoreConfig(method=method, beta_rank=5))
        assert pl.read_parquet(out).equals(expected)
        assert pl.read_parquet(out)["dead"].sum() == 5


def test_score_cli_reports_bad_input_without_a_traceback(tmp_path):
    src = write_parquet(_maxacts(), tmp_path / "maxacts.parquet", {"n_pairs": 40})
    proc = subprocess.run([CLI, "score", str(src), "--d-sae", "30", "--langs", "en,fr",
                           "--out", str(tmp_path / "s.parquet")], capture_output=True, text=True)
    assert proc.returncode != 0 and "fr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.parquet").exists()


def test_rule_log_leaves_torch_unimported(tmp_path):
    """A job that does not use torch must not pay for importing it in rule_log."""
    import subprocess
    import sys

    code = (
        "import sys, types\n"
        "from polyglot_sae.workflow_io import rule_log\n"
        f"smk = types.SimpleNamespace(log=[{str(tmp_path / 'job.log')!r}], rule='r', threads=1)\n"
        "with rule_log(smk) as log:\n"
        "    log.info('hello')\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "hello" in (tmp_path / "job.log").read_text()
