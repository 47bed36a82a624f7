"""files.py: what every file and JSON line towerlab writes goes through."""

import json
import math

from towerlab import files
from towerlab.runs import Run, RunRecord


def test_json_has_no_nan_and_metrics_files_stay_json(tmp_path):
    """Issue 43: NaN in final_metrics.json and printed JSON is not JSON (jq, browsers and databases refuse it)."""
    text = files.json_text({"auc": math.nan, "loss": math.inf, "curve": [1.0, -math.inf, 2], "name": "x"})
    assert json.loads(text) == {"auc": None, "loss": None, "curve": [1.0, None, 2], "name": "x"}
    from towerlab.recipes.configs import DigitsConfig

    run = Run(tmp_path / "run")
    try:
        run.open("digits", DigitsConfig())
        run.log(5, {"val/accuracy": math.nan, "train/loss": 1.0})
        run.write_final({"step": 5, "auc": math.nan, "best": {"value": math.nan}})
    finally:
        run.close()
    for name in ("metrics.jsonl", "final_metrics.json"):
        for line in (
            (tmp_path / "run" / name).read_text().splitlines()
            if name.endswith("l")
            else [(tmp_path / "run" / name).read_text()]
        ):
            json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN token
    from towerlab.runs.run import curve

    assert math.isnan(curve(tmp_path / "run", "accuracy")[0])
    assert RunRecord.load(tmp_path / "run").final["auc"] is None


def test_a_csv_cell_is_never_a_formula():
    assert [files.csv_cell(v) for v in ("=1+1", "+x", "-x", "@x", "\tx", "plain", -1.5, 3)] == [
        "'=1+1",
        "'+x",
        "'-x",
        "'@x",
        "'\tx",
        "plain",
        -1.5,
        3,
    ]
