"""Workers on one study (`towerlab search ... --trials N`): separate processes share one Optuna storage, one is
SIGKILLed mid-trial and started again; the study ends with exactly N trials that ended, each trial folder trained
to completion once, and a later run of the same line says the study is complete and trains nothing."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from helpers import run_cli


def _cli(args: list[str]) -> tuple[int, str]:
    proc = run_cli(*args, check=False, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


SPACE = {"lr": {"logfloat": [1.0e-4, 0.3]}, "units": {"choices": [16, 32, 64]}, "hidden_layers": {"int": [1, 2]}}
FIXED = ["dataset=digits", "epochs=2", "eval_every_epochs=1", "ckpt_every_steps=5", "log_every=5"]


def _line(tmp_path: Path, out: Path, storage: str, algo: str, trials: int, *extra: str) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    sets = [a for f in FIXED for a in ("--set", f)]
    return ["search", "mlp", "--space", str(space), "--algo", algo, "--trials", str(trials), "--storage", storage,
            "--study", "s1", "--out", str(out), "--heartbeat", "0.5", "--population", "2", "--no-report", *sets,
            *extra]  # fmt: skip


def _worker(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "towerlab", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def _mid_trial(worker: subprocess.Popen, timeout: float = 120) -> str:
    """Wait until the worker's own trial has checkpointed; its folder's name."""
    end = time.time() + timeout
    while time.time() < end:
        tasks = Path(f"/proc/{worker.pid}/task").glob("*/children")  # its trials are started by its slot threads
        for child in (c for task in tasks for c in task.read_text().split()):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            spec = next((Path(c.decode()) for c in cmd if c.endswith(b"trial.json")), None)
            if spec and (spec.parent / "checkpoints" / "last.json").is_file():
                return spec.parent.name
        time.sleep(0.2)
    raise AssertionError(f"worker {worker.pid} had no trial that checkpointed within {timeout} s")


def _check_study(storage, out: Path, trials: int, retried: str | None = None) -> None:
    study = optuna.load_study(study_name="s1", storage=storage)
    S = optuna.trial.TrialState
    if retried:  # the killed worker's trial: given up for dead (failed, no reason of its own), then completed
        dead = [
            t
            for t in study.get_trials()
            if t.state == S.FAIL and not {"towerlab_failed", "towerlab_surplus"} & set(t.user_attrs)
        ]
        assert [t.user_attrs["towerlab_key"] for t in dead] == [retried]
    ended = [t for t in study.get_trials() if t.state in (S.COMPLETE, S.PRUNED)]
    assert len(ended) == trials, [(t.number, t.state, t.user_attrs) for t in study.get_trials()]
    keys = [t.user_attrs["towerlab_key"] for t in ended]
    assert len(set(keys)) == trials  # each trial that ended is its own folder
    assert all("towerlab_failed" not in t.user_attrs for t in study.get_trials())  # failures: dead or surplus only
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == sorted(keys)  # a retried trial went on in its folder: none was started twice elsewhere
    pruned = [t.user_attrs["towerlab_key"] for t in ended if t.state == S.PRUNED]
    assert all((out / "trials" / k / "pruned.json").is_file() for k in pruned)
    with open(out / "trials.csv") as f:
        rows = {r["trial"]: r["status"] for r in csv.DictReader(f)}
    assert rows == {k: "pruned" if k in pruned else "ok" for k in keys}
    assert (out / "best.yaml").is_file()


def _three_workers_one_killed(tmp_path: Path, storage_arg: str, env: dict | None = None) -> tuple[Path, str]:
    """(the search folder, the killed worker's trial)."""
    out = tmp_path / "s1"
    args = _line(tmp_path, out, storage_arg, "tpe", 4, "--set", "epochs=12")  # long enough to be killed mid-way
    workers = [_worker(args, tmp_path / f"w{i}.log", env) for i in range(3)]
    try:
        killed = _mid_trial(workers[0])
        workers[0].send_signal(signal.SIGKILL)  # its trial's process checkpoints and ends with it (lifetime.py)
        workers[0].wait()
        workers[0] = _worker(args, tmp_path / "w0-again.log", env)
        codes = [w.wait(timeout=300) for w in workers]
    finally:
        for w in workers:
            w.kill()
    logs = "\n".join(p.read_text()[-1500:] for p in sorted(tmp_path.glob("w*.log")))
    assert codes == [0, 0, 0], logs
    return out, killed


def test_three_workers_on_a_journal_file_one_killed_end_with_exactly_the_asked_trials(tmp_path):
    journal = tmp_path / "study.log"
    out, killed = _three_workers_one_killed(tmp_path, f"journal:{journal}")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    _check_study(JournalStorage(JournalFileBackend(str(journal))), out, 4, retried=killed)
    before = sorted((out / "trials").iterdir())
    code, text = _cli(_line(tmp_path, out, f"journal:{journal}", "tpe", 4))
    assert code == 0 and "study s1 is complete: 4 of 4 trials ended; nothing to do" in text
    assert sorted((out / "trials").iterdir()) == before


def test_three_workers_on_postgresql_one_killed(tmp_path, postgres):
    url = f"postgresql+psycopg://towerlab@127.0.0.1:{postgres.port}/factory"
    env = {"PGPASSWORD": os.environ[postgres.password_env]}  # the password from the environment, never the URL
    out, killed = _three_workers_one_killed(tmp_path, url, env)
    os.environ.setdefault("PGPASSWORD", env["PGPASSWORD"])
    _check_study(url, out, 4, retried=killed)


def test_the_ga_runs_on_a_shared_study_with_local_workers(tmp_path):
    """--algo ga as a sampler over the study; --workers 2: two local slots are two workers of it; ASHA judges each
    trial against the curves the study holds (a pruned trial is pruned in the study and in its folder)."""
    out = tmp_path / "ga"
    journal = tmp_path / "ga.log"
    code, text = _cli(_line(tmp_path, out, f"journal:{journal}", "ga", 3, "--workers", "2", "--prune", "asha"))
    assert code == 0, text[-2000:]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    _check_study(storage, out, 3)
    study = optuna.load_study(study_name="s1", storage=storage)
    genomes = {tuple(sorted(t.params.items())) for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")}
    assert len(genomes) == 3  # no genome proposed twice (the third bred from the first two)


def test_a_worker_with_another_budget_or_algorithm_is_refused_in_one_line(tmp_path):
    out, journal = tmp_path / "s1", f"journal:{tmp_path / 's.log'}"
    study = optuna.create_study(
        study_name="s1",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.log"))),
    )
    study.set_user_attr("towerlab_folder", str(out.resolve()))
    study.set_user_attr("towerlab_algo", "tpe")
    study.set_user_attr("towerlab_trials", 12)
    code, text = _cli(_line(tmp_path, out, journal, "tpe", 6))
    assert code == 2 and "the study's workers run --trials 12; this one says 6" in text
    code, text = _cli(_line(tmp_path, out, journal, "random", 12))
    assert code == 2 and "the study's workers run --algo tpe; this one says random" in text


@pytest.mark.parametrize("algo", ["grid"])
def test_trials_is_refused_for_the_grid(tmp_path, algo):
    code, text = _cli(_line(tmp_path, tmp_path / "g", f"journal:{tmp_path / 'g.log'}", algo, 4))
    assert code == 2 and "--trials shares one study among workers for --algo tpe, random, ga" in text


def test_a_trial_may_train_on_several_processes(tmp_path):
    """--trial-procs 2: each trial is one torchrun job of two gloo processes (DDP), replicas equal at the end."""
    import json

    out = tmp_path / "mp"
    code, text = _cli(_line(tmp_path, out, f"journal:{tmp_path / 'mp.log'}", "random", 1, "--trial-procs", "2"))
    assert code == 0, text[-2000:]
    for trial in (out / "trials").iterdir():
        final = json.loads((trial / "final_metrics.json").read_text())
        assert final["world_size"] == 2 and final["replica_max_abs_diff"] == 0.0


def test_a_random_search_ends_with_the_same_best_on_one_worker_or_two(tmp_path):
    """Trial n's genome is the n-th draw from --seed, whoever asks: with deterministic training, one worker and
    two end with the same trials and the same best."""
    import json

    bests, genomes, procs = [], [], []
    for workers in ("1", "2"):  # the two searches side by side: separate studies, separate folders
        out = tmp_path / f"w{workers}"
        line = _line(tmp_path, out, f"journal:{tmp_path / f'w{workers}.log'}", "random", 2, "--workers", workers)
        procs.append(_worker([*line, "--set", "deterministic=true"], tmp_path / f"w{workers}.txt"))
    for workers, proc in zip(("1", "2"), procs):
        assert proc.wait(timeout=300) == 0, (tmp_path / f"w{workers}.txt").read_text()[-2000:]
        out = tmp_path / f"w{workers}"
        bests.append(json.loads((out / "best.json").read_text()))
        with open(out / "trials.csv") as f:
            genomes.append(sorted(tuple(sorted((k, v) for k, v in r.items() if k in SPACE)) for r in csv.DictReader(f)))
    assert genomes[0] == genomes[1]
    assert (bests[0]["genome"], bests[0]["fitness"]) == (bests[1]["genome"], bests[1]["fitness"])


def test_losing_the_race_to_create_optunas_tables_is_retried_and_nothing_else_is():
    """Workers starting together on a fresh database race to create Optuna's tables; PostgreSQL tells the loser
    "relation already exists" (DuplicateTable, a ProgrammingError) or a unique-key violation (IntegrityError): both
    are retried once the tables exist. Any other failure is said at once (the CI failure of session 16)."""
    import psycopg
    from sqlalchemy import exc

    from towerlab.search.workers import _table_race

    duplicate = psycopg.errors.DuplicateTable('relation "studies" already exists')
    assert _table_race(exc.ProgrammingError("CREATE TABLE studies (...)", {}, duplicate))
    unique = psycopg.errors.UniqueViolation('duplicate key value violates unique constraint "pg_type_typname"')
    assert _table_race(exc.IntegrityError("CREATE TABLE studies (...)", {}, unique))
    refused = psycopg.OperationalError("connection refused")
    assert not _table_race(exc.OperationalError("SELECT 1", {}, refused))
    assert not _table_race(ValueError("the study's direction differs"))
