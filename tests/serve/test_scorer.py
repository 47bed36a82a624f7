"""The service grades whole images with any classifier run, segdec included; a pixel-labelling run is refused."""

import numpy as np
import pytest

from towerlab import config
from towerlab.engine import fit
from towerlab.errors import ConfigError
from towerlab.recipes import get
from towerlab.serve.scorer import TorchScorer as Scorer


def test_segdec_run_grades_rows(kolektor_dir, tmp_path):
    cfg = config.build(
        get("segdec").Config,
        None,
        {
            "data": str(kolektor_dir),
            "stage": "joint",
            "height": 64,
            "width": 64,
            "feature_channels": 8,
            "batch_size": 2,
            "max_steps": 2,
        },
    )
    fit(get("segdec"), cfg, out=tmp_path / "run")
    scorer = Scorer(tmp_path / "run")
    rows = [np.full((1, 300, 120), 120, np.uint8), np.random.default_rng(0).integers(0, 255, (1, 300, 120), np.uint8)]
    out = scorer.score(rows)
    assert [o["status"] for o in out] == ["ok", "ok"]
    assert all(o["class_name"] in ("ok", "defect") and 0 <= o["probability"] <= 1 for o in out)


def test_fcn_run_is_refused_with_one_line(camvid_dir, tmp_path):
    cfg = config.build(
        get("fcn32s").Config,
        None,
        {"data": str(camvid_dir), "width": 0.125, "fc_channels": 8, "batch_size": 2, "max_steps": 1},
    )
    fit(get("fcn32s"), cfg, out=tmp_path / "run")
    with pytest.raises(
        ConfigError, match="the service .* needs a recipe that can classify whole images; fcn32s cannot"
    ):
        Scorer(tmp_path / "run")


@pytest.mark.parametrize("pointer", ['{"dir": 7, "step": 7}', '{"dir": "../../elsewhere", "step": 1}'])
def test_a_pointer_that_names_no_checkpoint_of_the_run_is_said_not_followed(model_run, tmp_path, caplog, pointer):
    """Issue 43: a last.json whose dir was a number or a path outside the run was passed over without a word."""
    import logging
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_run, run)
    (run / "checkpoints" / "last.json").write_text(pointer)
    with caplog.at_level(logging.WARNING, logger="towerlab.serve"):
        scorer = Scorer(run)
    assert scorer.current.name.startswith("step-") and "does not verify" in caplog.text
