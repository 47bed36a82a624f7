"""The service against a real PostgreSQL server on loopback, with real faults: a transaction that commits
out of id order, SIGKILL before commit, the server stopped and restarted under the running service."""

import os
import subprocess
import time

import pytest
from sqlalchemy import text

import dbcases
from serve_helpers import run_serve, serve_cmd, stop_process, wait_for, write_config


@pytest.fixture
def db_cfg(tmp_path, model_run, postgres):
    return dbcases.Db(postgres.resolved_url()), write_config(tmp_path / "serve.yaml", postgres.url, model_run)


def test_password_is_not_in_the_config(db_cfg, postgres):
    _, cfg = db_cfg
    assert "grader-secret" not in cfg.read_text() and f"${{{postgres.password_env}}}" in cfg.read_text()


def test_once_grades_everything_once(db_cfg, digit_rows, model_run):
    db, cfg = db_cfg
    dbcases.once_grades_everything_once(db, cfg, digit_rows, model_run)


def test_transaction_committing_out_of_order(db_cfg, digit_rows):
    db, cfg = db_cfg
    with db.engine.connect() as slow:
        slow.begin()  # a long transaction takes id 5 and holds it
        slow.execute(text("INSERT INTO measurements (id, label, vals) VALUES (:i, :l, :v)"),
                     {"i": 5, "l": digit_rows[5][0], "v": digit_rows[5][1]})
        db.insert(dbcases.rows(digit_rows, 6, 20))  # larger ids commit first
        assert run_serve(cfg, "--once").returncode == 0
        assert [o["row_key"] for o in db.outcomes()] == list(range(6, 26))  # 5 is not visible yet
        slow.commit()
    assert run_serve(cfg, "--once").returncode == 0
    dbcases.assert_each_graded_once(db, range(5, 26))


def test_sigkill_between_scoring_and_commit(db_cfg, digit_rows, tmp_path):
    db, cfg = db_cfg
    dbcases.sigkill_between_scoring_and_commit(db, cfg, digit_rows, tmp_path)


def test_rows_inserted_while_running_and_http(db_cfg, digit_rows):
    db, cfg = db_cfg
    dbcases.rows_inserted_while_running(db, cfg, digit_rows)


def test_server_stopped_and_restarted_under_the_service(db_cfg, digit_rows, postgres):
    db, cfg = db_cfg
    db.insert(dbcases.rows(digit_rows, 1, 50))
    proc = subprocess.Popen(serve_cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: db.count() == 50, 60, "the first 50 outcomes")
        postgres.stop()
        time.sleep(3)  # the service polls a dead server for a while
        postgres.start()
        db.engine.dispose()
        db.insert(dbcases.rows(digit_rows, 51, 50))
        wait_for(lambda: db.count() == 100, 90, "the outcomes after the restart")
    finally:
        code = stop_process(proc)
    log = proc.stderr.read()
    assert code == 0, log
    dbcases.assert_each_graded_once(db, range(1, 101))
    assert log.count("database unreachable") == 1, log  # once per outage, not once per poll
    assert log.count("database reachable again") == 1


def test_claim_mode_two_workers_skip_locked(db_cfg, tmp_path, postgres, model_run, digit_rows):
    db, _ = db_cfg
    results = dbcases.claim_mode_two_workers(db, tmp_path, postgres.url, model_run, digit_rows)
    assert all(r.returncode == 0 for r in results)


def test_wrong_password_at_startup(tmp_path, model_run, postgres, monkeypatch):
    cfg = write_config(tmp_path / "serve.yaml", postgres.url, model_run)
    proc = run_serve(cfg, "--once", env={postgres.password_env: "wrong"})
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "unreachable" in line and "***" in line and "wrong" not in line.split("(")[0]


def test_no_server_at_startup(tmp_path, model_run):
    from serve_helpers import free_port
    cfg = write_config(tmp_path / "serve.yaml", f"postgresql+psycopg://towerlab@127.0.0.1:{free_port()}/factory", model_run)
    proc = run_serve(cfg, "--once", env={"PGCONNECT_TIMEOUT": "3", **os.environ})
    assert proc.returncode == 2 and "unreachable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
