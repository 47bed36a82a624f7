"""Serve fixtures: a trained digits run, real digit scans as rows, and a real PostgreSQL server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from towerlab import config
from towerlab.engine import fit
from towerlab.recipes import digits


@pytest.fixture(scope="session")
def model_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve-model") / "digits"
    fit(
        digits,
        config.build(digits.Config, None, {"max_steps": 120, "eval_every_epochs": 0.0, "log_every": 40}),
        out=out,
    )
    return out


@pytest.fixture(scope="session")
def digit_rows() -> list[tuple[int, str]]:
    """(label, payload text) for 300 real 8x8 scans; values 0..16, comma separated."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return [(int(d.target[i]), ",".join(str(int(v)) for v in d.data[i])) for i in range(300)]
