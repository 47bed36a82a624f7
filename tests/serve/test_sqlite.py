"""The service on its embedded default, SQLite, with real processes and real SIGKILLs."""

import json
import time

import pytest

import dbcases
from serve_helpers import run_serve, write_config


@pytest.fixture
def db_cfg(tmp_path, model_run):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    return dbcases.Db(url), write_config(tmp_path / "serve.yaml", url, model_run), url


def test_once_grades_everything_once(db_cfg, digit_rows, model_run):
    db, cfg, _ = db_cfg
    dbcases.once_grades_everything_once(db, cfg, digit_rows, model_run)


def test_regrade_errors_replaces_each_error_once(db_cfg, digit_rows):
    db, cfg, _ = db_cfg
    dbcases.regrade_errors_once(db, cfg, digit_rows)


def test_late_rows_are_still_graded(db_cfg, digit_rows):
    db, cfg, _ = db_cfg
    dbcases.late_rows_are_still_graded(db, cfg, digit_rows)


def test_sigkill_between_scoring_and_commit(db_cfg, digit_rows, tmp_path):
    db, cfg, _ = db_cfg
    dbcases.sigkill_between_scoring_and_commit(db, cfg, digit_rows, tmp_path)


def test_rows_inserted_while_running_and_http(db_cfg, digit_rows):
    db, cfg, _ = db_cfg
    dbcases.rows_inserted_while_running(db, cfg, digit_rows)


def test_claim_mode(db_cfg, digit_rows, tmp_path, model_run):
    db, _, url = db_cfg
    dbcases.claim_mode_two_workers(db, tmp_path, url, model_run, digit_rows)


def test_unreachable_database_at_startup(tmp_path, model_run):
    cfg = write_config(tmp_path / "serve.yaml", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'f.db'}", model_run)
    proc = run_serve(cfg, "--once")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    # issue 43: a file, not a server: "check that the server runs" sent users the wrong way
    assert len(lines) == 1 and "database 'default'" in lines[0] and "the SQLite file cannot be opened" in lines[0]
    assert "folder exists and is writable" in lines[0] and "server" not in lines[0]


def test_a_model_path_that_is_not_there_is_said_as_such(tmp_path, model_run):
    cfg = write_config(tmp_path / "serve.yaml", f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "no-such-run")
    proc = run_serve(cfg, "--once")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "train it first" not in proc.stderr


def test_a_gap_that_never_fills_is_given_up_by_name(tmp_path, model_run, digit_rows):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db, cfg = dbcases.Db(url), write_config(tmp_path / "serve.yaml", url, model_run, gap_wait_s=8)
    db.insert(dbcases.rows(digit_rows, 1, 10) + dbcases.rows(digit_rows, 15, 6))  # ids 11-14 are missing
    assert run_serve(cfg, "--once").returncode == 0
    seen = time.monotonic()
    db.insert(dbcases.rows(digit_rows, 12, 1))  # one fills in late: below the watermark, still found
    assert run_serve(cfg, "--once").returncode == 0
    dbcases.assert_each_graded_once(db, [*range(1, 11), 12, *range(15, 21)])
    time.sleep(max(0.0, 8.5 - (time.monotonic() - seen)))
    proc = run_serve(cfg, "--once")
    warnings = [json.loads(line) for line in proc.stderr.splitlines() if "gap never filled" in line]
    assert [(w["ids"], w["ungraded"]) for w in warnings] == [("11-14", 3)]  # given up, by name: never silently
    db.insert(dbcases.rows(digit_rows, 13, 1))
    assert run_serve(cfg, "--once").returncode == 0
    assert 13 not in [o["row_key"] for o in db.outcomes()]


def test_hot_model_swap_under_load(db_cfg, digit_rows, tmp_path, model_run):
    db, _, url = db_cfg
    dbcases.hot_swap_under_load(db, tmp_path, url, model_run, digit_rows)


def test_image_bytes_and_paths(tmp_path, model_run):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    dbcases.image_payloads(url, url, tmp_path, model_run)
