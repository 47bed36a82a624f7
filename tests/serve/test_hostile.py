"""The service against hostile rows and mistaken configs (issue 24), on SQLite and the real PostgreSQL server: keys
that are not integers, tables and columns that are not there, payloads of the wrong shape, passwords that hold URL
syntax, a driver that is not installed. Each is an error outcome, a warning or one line with exit code 2; none is a
traceback or a loop."""

import json

import pytest
import yaml
from sqlalchemy import create_engine, text

import dbcases
from helpers import hostile_pictures
from serve_helpers import run_serve, write_config


def _one_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def _stops(proc, *fragments):
    """A running service that stops on a mistake: exit 2, no traceback, its last line says why."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert "Traceback" not in proc.stderr and last.startswith("towerlab: error: "), proc.stderr[-2000:]
    for f in fragments:
        assert f in last, (f, last)


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
    _one_line(
        run_serve(write_config(tmp_path / "serve.yaml", url, model_run), timeout=60),
        "key column measurements.id",
        "integer key",
    )


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"table": "no_such_table"}, "table no_such_table does not exist"),
        ({"key_column": "ident"}, "has no column ident"),
        ({"payload": {"kind": "text", "column": "pixels", "height": 8, "width": 8}}, "has no column pixels"),
    ],
)
def test_a_missing_table_or_column_is_a_config_error_not_an_outage(sqlite, tmp_path, model_run, change, fragment):
    """Without --once too: the service must not sit 'retrying with backoff' on a mistake no retry can fix."""
    _, url = sqlite
    cfg = write_config(tmp_path / "serve.yaml", url, model_run, **change)
    _one_line(run_serve(cfg, timeout=60), fragment)


def test_a_payload_of_another_shape_is_refused_at_start_naming_both(sqlite, tmp_path, model_run, digit_rows):
    """A height/width that the model does not take would make every row an error and use the table up: refused in
    one line before a row is read (issue 43); with resize: true the rows are resized and graded."""
    db, url = sqlite
    db.insert(dbcases.rows(digit_rows, 1, 3))
    cfg = write_config(
        tmp_path / "serve.yaml", url, model_run, payload={"kind": "text", "column": "vals", "height": 4, "width": 16}
    )
    _one_line(run_serve(cfg, "--once", timeout=60), "payload is 4x16 values but the model takes 8x8", "resize: true")
    assert db.outcomes() == []
    resized = write_config(
        tmp_path / "serve2.yaml",
        url,
        model_run,
        name="line2",
        payload={"kind": "text", "column": "vals", "height": 4, "width": 16, "resize": True},
    )
    assert run_serve(resized, "--once", timeout=60).returncode == 0
    assert sum(o["status"] == "ok" for o in db.outcomes()) == 3  # asked for: resized and graded


@pytest.mark.parametrize(
    "declared,payload,fragment",
    [
        ("TEXT", {"kind": "image", "column": "vals"}, "cannot hold a payload of kind image: it needs binary"),
        ("BLOB", {"kind": "text", "column": "vals", "height": 8, "width": 8}, "cannot hold a payload of kind text"),
        ("TIMESTAMP", {"kind": "blob", "column": "vals", "height": 8, "width": 8}, "kind blob"),
    ],
)
def test_a_column_whose_type_cannot_hold_the_payload_is_refused_at_start(
    sqlite, tmp_path, model_run, declared, payload, fragment
):
    db, url = sqlite
    with db.engine.begin() as c:
        c.execute(text("DROP TABLE measurements"))
        c.execute(text(f"CREATE TABLE measurements (id INTEGER PRIMARY KEY, vals {declared})"))
        c.execute(text("INSERT INTO measurements (id, vals) VALUES (1, 'x'), (2, 'y')"))
    _one_line(
        run_serve(write_config(tmp_path / "serve.yaml", url, model_run, payload=payload), "--once", timeout=60),
        f"column measurements.vals is {declared}",
        fragment,
    )
    assert db.outcomes() == []


def test_a_first_batch_failing_the_same_way_stops_before_a_row_is_used_up(sqlite, tmp_path, model_run, digit_rows):
    """A mistake no start-up check can see (here the delimiter): every row of the first batch fails alike. The service
    stops with one line and writes nothing; fixed, it grades every row; --accept-errors grades them as errors."""
    db, url = sqlite
    db.insert(dbcases.rows(digit_rows, 1, 10))
    wrong = write_config(
        tmp_path / "wrong.yaml",
        url,
        model_run,
        payload={"kind": "text", "column": "vals", "delimiter": ";", "height": 8, "width": 8},
    )
    for args in (("--once",), ()):  # the daemon too: it must not sit there consuming the table
        _stops(
            run_serve(wrong, *args, timeout=60),
            "all 10 rows of its first batch failed the same way",
            "expected 64 values (8x8), got 1",
            "--accept-errors",
        )
        assert db.outcomes() == []
    right = write_config(tmp_path / "right.yaml", url, model_run)
    assert run_serve(right, "--once", timeout=60).returncode == 0
    assert [o["status"] for o in db.outcomes()] == ["ok"] * 10
    # a proven source goes on past rows that fail alike: they are bad rows now, not a bad config
    db.insert([(11, 0, "1,2"), (12, 0, "3,4")])
    assert run_serve(right, "--once", timeout=60).returncode == 0
    assert [o["status"] for o in db.outcomes()][10:] == ["error", "error"]
    other = write_config(
        tmp_path / "accept.yaml",
        url,
        model_run,
        name="line2",
        payload={"kind": "text", "column": "vals", "delimiter": ";", "height": 8, "width": 8},
    )
    assert run_serve(other, "--once", "--accept-errors", timeout=60).returncode == 0
    with db.engine.connect() as c:
        assert (
            c.execute(
                text("SELECT count(*) FROM towerlab_outcome WHERE source = 'line2' AND status = 'error'")
            ).scalar()
            == 12
        )


def test_a_new_outcome_table_beside_the_old_state_is_refused(sqlite, tmp_path, model_run, digit_rows):
    """The state table's watermark belongs to the outcome table it was written with: a new outcome_table would
    silently skip every row below it."""
    db, url = sqlite
    db.insert(dbcases.rows(digit_rows, 1, 5))
    assert run_serve(write_config(tmp_path / "serve.yaml", url, model_run), "--once", timeout=60).returncode == 0
    cfg = write_config(tmp_path / "serve.yaml", url, model_run)
    moved = yaml.safe_load(cfg.read_text()) | {"outcome_table": "grades_v2"}
    cfg.write_text(yaml.safe_dump(moved))
    _one_line(
        run_serve(cfg, "--once", timeout=60),
        "state table towerlab_state says its rows up to id 5 are graded",
        "outcome table grades_v2 holds no outcome of it",
    )
    own = moved | {"state_table": "grades_v2_state", "gap_table": "grades_v2_gap"}
    cfg.write_text(yaml.safe_dump(own))
    assert run_serve(cfg, "--once", timeout=60).returncode == 0
    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM grades_v2")).scalar() == 5


def test_no_row_stops_the_service(sqlite, tmp_path, model_run):
    """Bytes that make a decoder raise what nobody expects, formats off the allow-list, a path too long for the file
    system and a loop of links: each is that row's error outcome; the good rows of the same batches are graded and
    committed, --once ends with 0, and a second run grades nothing again (issue 43)."""
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    db, url = sqlite
    digits, root = load_digits(), tmp_path / "pictures"
    root.mkdir()
    good = {}
    for i in range(6):
        buf = io.BytesIO()
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(buf, format="PNG")
        good[i] = buf.getvalue()
        (root / f"{i}.png").write_bytes(buf.getvalue())
    (root / "loop").symlink_to(root / "loop")
    bad = hostile_pictures()
    for name, data in bad.items():
        (root / f"{name}.img").write_bytes(data)
    with db.engine.begin() as c:
        c.execute(text("CREATE TABLE photos (id INTEGER PRIMARY KEY, png BLOB, path TEXT)"))
        rows = [
            (1, good[0], "0.png"),
            (2, bad["tiff_typeerror"], "tiff_typeerror.img"),
            (3, good[1], "1.png"),
            (4, bad["dds"], "dds.img"),
            (5, bad["eps"], "eps.img"),
            (6, good[2], "x" * 5000),
            (7, good[3], "loop/a.png"),
            (8, good[4], "4.png"),
        ]
        c.execute(
            text("INSERT INTO photos (id, png, path) VALUES (:i, :b, :p)"),
            [{"i": i, "b": b, "p": p} for i, b, p in rows],
        )
    for kind, column in (("image", "png"), ("path", "path")):
        cfg = write_config(
            tmp_path / f"{kind}.yaml",
            url,
            model_run,
            name=kind,
            table="photos",
            batch_size=8,
            payload={"kind": kind, "column": column, **({"root": str(root)} if kind == "path" else {})},
        )
        for _ in range(2):
            proc = run_serve(cfg, "--once", timeout=60)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        with db.engine.connect() as c:
            out = {
                r.row_key: r
                for r in c.execute(
                    text("SELECT row_key, status, error FROM towerlab_outcome WHERE source = :s"), {"s": kind}
                )
            }
        assert sorted(out) == list(range(1, 9))
        errors = {k: o.error for k, o in out.items() if o.status == "error"}
        assert all("_io.BytesIO" not in e and len(e) < 400 for e in errors.values()), errors
        if kind == "image":
            assert sorted(errors) == [2, 4, 5], errors
            assert "TypeError" in errors[2] and "not a PNG, JPEG, BMP, TIFF or WebP image" in errors[4]
            assert "not a PNG, JPEG, BMP, TIFF or WebP image" in errors[5]
        else:
            assert sorted(errors) == [2, 4, 5, 6, 7], errors
            assert "cannot be followed" in errors[6] and "5,000 characters" in errors[6]
            assert "cannot be followed" in errors[7] or "no file" in errors[7]


@pytest.mark.parametrize(
    "mistake,fragment",
    [
        ({"key_column": "select"}, "reserved word"),
        ({"table": "towerlab_outcome"}, "is also the outcome_table"),
        ({"payload": {"kind": "text", "column": "vals", "delimiter": "", "height": 8, "width": 8}}, "delimiter"),
    ],
)
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
    cfg = yaml.safe_load(
        write_config(p, "postgresql+psycopg://u:${TL_PW}@db.example:5432/factory", model_run).read_text()
    )
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


def test_the_real_server_accepts_such_a_password_and_no_part_of_it_is_printed(
    postgres, pg_role, tmp_path, model_run, digit_rows
):
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
