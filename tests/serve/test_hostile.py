"""The service against hostile rows and mistaken configs (issue 24), on SQLite and the real PostgreSQL server: keys
that are not integers, tables and columns that are not there, payloads of the wrong shape, passwords that hold URL
syntax, a driver that is not installed. Each is an error outcome, a warning or one line with exit code 2; none is a
traceback or a loop."""

import json

import pytest
import yaml
from sqlalchemy import create_engine, text

import dbcases
from serve_helpers import run_serve, write_config


def _one_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def sqlite(tmp_path, model_run):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    return dbcases.Db(url), url


def test_keys_that_are_not_integers_are_skipped_and_said_once(sqlite, tmp_path, model_run, digit_rows):
    """SQLite keeps NULL, text and 1.5 in an INTEGER column as they are; --once must still end."""
    db, url = sqlite
    with db.engine.begin() as c:
        c.execute(text("DROP TABLE measurements"))
        c.execute(text("CREATE TABLE measurements (id INTEGER, label INTEGER, vals TEXT, status VARCHAR(8))"))
    db.insert(dbcases.rows(digit_rows, 1, 5))
    with db.engine.begin() as c:
        for key in (None, "../../x", 1.5, 1.7):
            c.execute(text("INSERT INTO measurements (id, vals) VALUES (:k, :v)"), {"k": key, "v": digit_rows[0][1]})
    cfg = write_config(tmp_path / "serve.yaml", url, model_run)
    proc = run_serve(cfg, "--once", timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dbcases.assert_each_graded_once(db, range(1, 6))
    warned = [json.loads(ln) for ln in proc.stderr.splitlines() if "not an integer" in ln]
    assert len(warned) == 1 and warned[0]["rows"] == 4
    assert run_serve(cfg, "--once", timeout=60).returncode == 0  # and again: nothing regraded, nothing stuck
    dbcases.assert_each_graded_once(db, range(1, 6))


@pytest.mark.parametrize("column_type", ["REAL", "TEXT", "NUMERIC(10,2)"])
def test_a_key_column_that_cannot_hold_integer_ids_is_refused_at_start(sqlite, tmp_path, model_run, column_type):
    db, url = sqlite
    with db.engine.begin() as c:
        c.execute(text("DROP TABLE measurements"))
        c.execute(text(f"CREATE TABLE measurements (id {column_type}, vals TEXT)"))
    _one_line(run_serve(write_config(tmp_path / "serve.yaml", url, model_run), timeout=60),
              "key column measurements.id", "integer key")


@pytest.mark.parametrize("change,fragment", [
    ({"table": "no_such_table"}, "table no_such_table does not exist"),
    ({"key_column": "ident"}, "has no column ident"),
    ({"payload": {"kind": "text", "column": "pixels", "height": 8, "width": 8}}, "has no column pixels"),
])
def test_a_missing_table_or_column_is_a_config_error_not_an_outage(sqlite, tmp_path, model_run, change, fragment):
    """Without --once too: the service must not sit 'retrying with backoff' on a mistake no retry can fix."""
    _, url = sqlite
    cfg = write_config(tmp_path / "serve.yaml", url, model_run, **change)
    _one_line(run_serve(cfg, timeout=60), fragment)


def test_a_payload_of_another_shape_is_an_error_outcome_naming_both(sqlite, tmp_path, model_run, digit_rows):
    db, url = sqlite
    db.insert(dbcases.rows(digit_rows, 1, 3))
    cfg = write_config(tmp_path / "serve.yaml", url, model_run,
                       payload={"kind": "text", "column": "vals", "height": 4, "width": 16})
    assert run_serve(cfg, "--once", timeout=60).returncode == 0
    out = db.outcomes()
    assert [o["status"] for o in out] == ["error"] * 3 and "payload is 4x16 but the model takes 8x8" in out[0]["error"]
    resized = write_config(tmp_path / "serve2.yaml", url, model_run, name="line2",
                           payload={"kind": "text", "column": "vals", "height": 4, "width": 16, "resize": True})
    assert run_serve(resized, "--once", timeout=60).returncode == 0
    assert sum(o["status"] == "ok" for o in db.outcomes()) == 3  # asked for: resized and graded


@pytest.mark.parametrize("mistake,fragment", [
    ({"key_column": "select"}, "reserved word"),
    ({"table": "towerlab_outcome"}, "is also the outcome_table"),
    ({"payload": {"kind": "text", "column": "vals", "delimiter": "", "height": 8, "width": 8}}, "delimiter"),
])
def test_configs_that_cannot_work_are_refused_when_read(tmp_path, model_run, mistake, fragment):
    cfg = write_config(tmp_path / "serve.yaml", f"sqlite:///{tmp_path / 'f.db'}", model_run, **mistake)
    _one_line(run_serve(cfg, "--once", timeout=60), fragment)
    assert not (tmp_path / "f.db").exists()  # refused before touching the database


def test_a_driver_that_is_not_installed_names_its_pip_line(tmp_path, model_run):
    cfg = write_config(tmp_path / "serve.yaml", "mssql+pyodbc://u:p@127.0.0.1/db?driver=x", model_run)
    _one_line(run_serve(cfg, "--once", timeout=60), "pip install 'towerlab[mssql]'")
    cfg = write_config(tmp_path / "serve.yaml", "nosuchdb://u:p@127.0.0.1/db", model_run)
    _one_line(run_serve(cfg, "--once", timeout=60), "database URL", "***")


@pytest.mark.parametrize("password", ["p@ss", "100%sure", "a/b:c@d%40e", "#x?y"])
def test_a_password_with_url_syntax_stays_the_password(tmp_path, model_run, monkeypatch, password):
    from towerlab.serve import settings

    monkeypatch.setenv("TL_PW", password)
    p = tmp_path / "serve.yaml"
    cfg = yaml.safe_load(write_config(p, "postgresql+psycopg://u:${TL_PW}@db.example:5432/factory", model_run).read_text())
    url = settings.load(p).databases["default"]
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    assert parsed.password == password and parsed.host == "db.example" and parsed.database == "factory"
    assert cfg["database"].count("${TL_PW}") == 1


@pytest.fixture
def pg_role(postgres):
    """A role whose password holds every character that means something in a URL."""
    secret = "p@ss:w/rd%41#?"
    escaped = secret.replace("'", "''")
    postgres.psql(f"DROP ROLE IF EXISTS odd; CREATE ROLE odd LOGIN PASSWORD '{escaped}'")
    postgres.psql("GRANT ALL ON DATABASE factory TO odd; ")
    postgres.psql("GRANT ALL ON SCHEMA public TO odd", db="factory")
    return secret


def test_the_real_server_accepts_such_a_password_and_no_part_of_it_is_printed(postgres, pg_role, tmp_path,
                                                                              model_run, digit_rows):
    db = dbcases.Db(postgres.resolved_url())
    db.insert(dbcases.rows(digit_rows, 1, 4))
    with db.engine.begin() as c:
        c.execute(text("GRANT ALL ON ALL TABLES IN SCHEMA public TO odd"))
    url = f"postgresql+psycopg://odd:${{TL_ODD}}@127.0.0.1:{postgres.port}/factory"
    cfg = write_config(tmp_path / "serve.yaml", url, model_run)
    from sqlalchemy.engine import make_url

    as_odd = dbcases.Db.__new__(dbcases.Db)  # the service made its tables as odd: read (and drop) them as odd
    as_odd.engine = create_engine(make_url(postgres.resolved_url()).set(username="odd", password=pg_role))
    try:
        proc = run_serve(cfg, "--once", env={"TL_ODD": pg_role}, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        dbcases.assert_each_graded_once(as_odd, range(1, 5))
        wrong = run_serve(cfg, "--once", env={"TL_ODD": "x@evil.example%"}, timeout=120)
        assert wrong.returncode == 2 and "127.0.0.1" in wrong.stderr and "evil.example" not in wrong.stderr
    finally:
        with as_odd.engine.begin() as c:
            for t in ("towerlab_outcome", "towerlab_state", "towerlab_gap"):
                c.execute(text(f"DROP TABLE IF EXISTS {t}"))
        as_odd.engine.dispose()


def test_on_postgresql_a_missing_table_is_one_line_and_a_text_key_column_is_refused(postgres, tmp_path, model_run):
    engine = create_engine(postgres.resolved_url())
    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS measurements"))
    cfg = write_config(tmp_path / "serve.yaml", postgres.url, model_run)
    _one_line(run_serve(cfg, timeout=120), "table measurements does not exist")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE measurements (id TEXT PRIMARY KEY, vals TEXT)"))
    _one_line(run_serve(cfg, timeout=120), "key column measurements.id is TEXT")
    with engine.begin() as c:
        c.execute(text("DROP TABLE measurements"))
    engine.dispose()
