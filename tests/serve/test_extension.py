"""docs/architecture.md's "Adding a serve backend" and "Adding a database", followed step by step: a model engine
that is neither PyTorch nor ONNX Runtime (a nearest-class-mean classifier in NumPy, saved as .npz) registered as a
backend grades real rows in SQLite exactly once; a database dialect is found by SQLAlchemy's name and a database
not named falls back to plain SQL."""

import hashlib
import json

import numpy as np

from towerlab.serve import dialects, run
from towerlab.serve import settings as settings_mod
from towerlab.serve.model import Version, outcomes
from towerlab.serve.worker import Service

import dbcases
from serve_helpers import write_config


class MeansScorer:
    """Step 1: a class with the Scorer protocol's members (serve/model.py)."""

    def __init__(self, path: str):
        data = np.load(path)
        self.means, self.class_names = data["means"], [str(c) for c in range(10)]
        self.run_id = "means"
        self.current = Version(path, 0, hashlib.sha256(self.means.tobytes()).hexdigest(), self.means)
        self.input_shape = (1, 8, 8)

    @property
    def sha256(self) -> str:
        return self.current.sha256

    def score(self, images: list[np.ndarray]) -> list[dict]:
        x = np.stack(images).reshape(len(images), -1)
        d = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        p = np.exp(-(d - d.min(1, keepdims=True)) / 4.0)
        return outcomes(p / p.sum(1, keepdims=True), self.class_names, self.run_id, self.sha256)

    def swap(self) -> bool:
        return False


def test_a_new_backend_grades_rows_exactly_once(tmp_path, monkeypatch, digit_rows):
    from sklearn.datasets import load_digits

    d = load_digits()
    means = np.stack([d.data[300:][d.target[300:] == c].mean(0) / 16 for c in range(10)])  # rows 0..299 are graded
    np.savez(tmp_path / "model.npz", means=means)
    # step 2: an entry in BACKENDS, before the catch-all
    backend = run.Backend("numpy", lambda model: model.endswith(".npz"), lambda s: MeansScorer(s.model))
    monkeypatch.setattr(run, "BACKENDS", (backend, *run.BACKENDS))
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db = dbcases.Db(url)
    db.insert(dbcases.rows(digit_rows, 0, 120))
    settings = settings_mod.load(str(write_config(tmp_path / "serve.yaml", url, tmp_path / "model.npz")))
    scorer = run.scorer(settings)
    assert isinstance(scorer, MeansScorer)
    Service(settings, scorer).run(once=True)
    Service(settings, run.scorer(settings)).run(once=True)  # a second pass grades nothing again
    got = db.outcomes()
    dbcases.assert_each_graded_once(db, range(120))
    started = json.loads((tmp_path / "images" / "env.json").read_text())  # what produced the service
    assert started["command"] and "packages" in started and started["python"]
    right = sum(o["class_name"] == str(o["label"]) for o in got)
    assert right / len(got) > 0.8 and {o["model_sha256"] for o in got} == {scorer.sha256}


def test_a_database_is_found_by_its_sqlalchemy_name_and_others_get_plain_sql():
    assert isinstance(dialects.of("postgresql"), dialects.PostgreSQL) and dialects.of("postgresql").notify
    assert isinstance(dialects.of("sqlite"), dialects.SQLite)
    plain = dialects.of("oracle")
    assert type(plain) is dialects.Dialect and not plain.notify and plain.snapshot(None) is None
    import towerlab.serve.store as store

    source = open(store.__file__).read()  # every difference is a Dialect method: the store names no database
    assert not any(name in source for name in ('"postgresql"', '"sqlite"', '"mssql"', "dialect =="))
