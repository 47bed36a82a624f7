"""Behaviour every database must show; test_sqlite.py and test_postgres.py run these against their server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

from sqlalchemy import create_engine, text

from serve_helpers import free_port, run_serve, serve_cmd, stop_process, wait_for, write_config


class Db:
    def __init__(self, url: str):
        self.engine = create_engine(url)
        with self.engine.begin() as c:
            for t in ("measurements", "towerlab_outcome", "towerlab_state", "towerlab_gap"):
                c.execute(text(f"DROP TABLE IF EXISTS {t}"))
            c.execute(
                text("CREATE TABLE measurements (id BIGINT PRIMARY KEY, label INTEGER, vals TEXT, status VARCHAR(8))")
            )

    def insert(self, rows: list[tuple[int, int, str]], status: str | None = "new") -> None:
        with self.engine.begin() as c:
            c.execute(
                text("INSERT INTO measurements (id, label, vals, status) VALUES (:i, :l, :v, :s)"),
                [{"i": i, "l": lab, "v": v, "s": status} for i, lab, v in rows],
            )

    def outcomes(self) -> list[dict]:
        with self.engine.connect() as c:
            try:
                return [
                    dict(r._mapping)
                    for r in c.execute(
                        text(
                            "SELECT o.row_key, o.status, o.class_name, o.error, o.model_sha256, o.model_run, m.label "
                            "FROM towerlab_outcome o LEFT JOIN measurements m ON m.id = o.row_key ORDER BY o.row_key"
                        )
                    )
                ]
            except Exception:  # the service has not created the table yet
                return []

    def count(self) -> int:
        return len(self.outcomes())


def rows(digit_rows, start: int, n: int):
    return [(start + i, *digit_rows[(start + i) % len(digit_rows)]) for i in range(n)]


def assert_each_graded_once(db: Db, keys) -> None:
    got = [o["row_key"] for o in db.outcomes()]
    assert got == sorted(keys), f"missing {sorted(set(keys) - set(got))[:10]}, extra {len(got) - len(set(got))}"


def once_grades_everything_once(db, cfg, digit_rows, model_run):
    db.insert(rows(digit_rows, 1, 150))
    db.insert([(500, 1, "1,2,x"), (501, 1, ",".join(["nan"] * 64))])
    proc = run_serve(cfg, "--once")
    assert proc.returncode == 0, proc.stderr
    out = {o["row_key"]: o for o in db.outcomes()}
    assert len(out) == 152
    assert out[500]["status"] == "error" and "expected 64 values" in out[500]["error"]
    assert out[501]["status"] == "error" and "NaN" in out[501]["error"]
    good = [o for o in out.values() if o["status"] == "ok"]
    assert sum(o["class_name"] == str(o["label"]) for o in good) / len(good) > 0.8  # the model really grades digits
    assert {o["model_sha256"] for o in out.values()} == {
        __import__("hashlib")
        .sha256((next((model_run / "checkpoints").glob("step-*")) / "model.safetensors").read_bytes())
        .hexdigest()
    }
    assert (cfg.parent / "images" / "line1" / "1.png").is_file()
    assert run_serve(cfg, "--once").returncode == 0
    assert db.count() == 152  # a second pass grades nothing twice
    log = [json.loads(line) for line in proc.stderr.splitlines()]
    assert sum(e.get("rows", 0) for e in log if e["msg"] == "graded") == 152


def late_rows_are_still_graded(db, cfg, digit_rows):
    db.insert(rows(digit_rows, 1, 20) + rows(digit_rows, 30, 10))
    assert run_serve(cfg, "--once").returncode == 0
    db.insert(rows(digit_rows, 21, 9))  # smaller ids that "commit" after larger ones were graded
    assert run_serve(cfg, "--once").returncode == 0
    assert_each_graded_once(db, range(1, 40))


def regrade_errors_once(db, cfg, digit_rows):
    """`--regrade errors` after the cause is fixed: each error outcome is replaced by the row's new grade, in place,
    once; a second pass changes nothing; rows still bad stay errors (issue 43)."""
    good = rows(digit_rows, 1, 12)
    db.insert([(i, label, "1,2,x" if i % 3 == 0 else v) for i, label, v in good])  # ids 3, 6, 9, 12 are bad
    assert run_serve(cfg, "--once").returncode == 0
    assert [o["row_key"] for o in db.outcomes() if o["status"] == "error"] == [3, 6, 9, 12]
    with db.engine.begin() as c:  # the data is mended for 3, 6 and 9; 12 stays bad
        for i, _, v in good[2:9:3]:
            c.execute(text("UPDATE measurements SET vals = :v WHERE id = :i"), {"v": v, "i": i})
    for _ in range(2):
        proc = run_serve(cfg, "--once", "--regrade", "errors")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert_each_graded_once(db, range(1, 13))
        assert [o["row_key"] for o in db.outcomes() if o["status"] == "error"] == [12]
    regraded = [json.loads(ln) for ln in proc.stderr.splitlines() if '"regraded"' in ln]
    assert regraded[0]["rows"] == 1 and regraded[0]["ok"] == 0  # the second pass met only row 12
    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM towerlab_outcome")).scalar() == 12


def sigkill_between_scoring_and_commit(db, cfg, digit_rows, tmp_path):
    db.insert(rows(digit_rows, 1, 100))
    marker = tmp_path / "holding"
    proc = subprocess.Popen(
        serve_cmd(cfg),
        env={**os.environ, "TOWERLAB_SERVE_HOLD_BEFORE_COMMIT": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(marker.exists, 60, "the service to grade a batch")
    os.kill(proc.pid, signal.SIGKILL)  # graded, not yet committed
    proc.wait()
    assert db.count() == 0
    assert run_serve(cfg, "--once").returncode == 0
    assert_each_graded_once(db, range(1, 101))


def rows_inserted_while_running(db, cfg, digit_rows, expect_lines: bool = True):
    port = free_port()
    proc = subprocess.Popen(
        serve_cmd(cfg, "--http", str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        for k in range(5):
            db.insert(rows(digit_rows, 1 + 40 * k, 40))
            time.sleep(0.3)
        wait_for(lambda: db.count() == 200, 60, "200 outcomes")
        get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)  # noqa: E731
        assert json.loads(get("/healthz").read())["alive"] is True
        ready = json.loads(get("/readyz").read())
        assert ready["ready"] is True and ready["databases"] == {"default": "ok"}
        metrics = get("/metrics").read().decode()
        assert 'towerlab_rows_scored_total{source="line1"} 200.0' in metrics
        assert "towerlab_batch_seconds_bucket" in metrics and "towerlab_source_lag_rows" in metrics
    finally:
        code = stop_process(proc)
    assert code == 0, proc.stderr.read()
    assert_each_graded_once(db, range(1, 201))


def claim_mode_two_workers(db, tmp_path, url, model_run, digit_rows):
    cfg = write_config(tmp_path / "claim.yaml", url, model_run, mode="claim", status_column="status", batch_size=16)
    db.insert(rows(digit_rows, 1, 200))
    results = []
    threads = [threading.Thread(target=lambda: results.append(run_serve(cfg, "--once"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert_each_graded_once(db, range(1, 201))
    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM measurements WHERE status = 'done'")).scalar() == 200
    return results


def _weights_sha(folder) -> str:
    import hashlib

    kind = "ema" if (folder / "ema.safetensors").is_file() else "model"
    return hashlib.sha256((folder / f"{kind}.safetensors").read_bytes()).hexdigest()


def hot_swap_under_load(db, tmp_path, url, model_run, digit_rows):
    """Rows arrive all along; the run trains on (a newer checkpoint), then a damaged checkpoint is pointed at. No row
    is lost or graded twice, outcomes switch version once, the damaged one is refused once and never serves."""
    import shutil
    from pathlib import Path

    from towerlab import checkpoint
    from towerlab.engine import resume

    model = Path(shutil.copytree(model_run, tmp_path / "model"))
    first = checkpoint.find(model)
    cfg = write_config(tmp_path / "swap.yaml", url, model, batch_size=16)
    cfg.write_text(cfg.read_text() + "reload: true\nreload_check_s: 0.2\n")
    port = free_port()
    proc = subprocess.Popen(
        serve_cmd(cfg, "--http", str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    stop = threading.Event()

    def writer():
        k = 1
        while not stop.is_set():
            db.insert(rows(digit_rows, k, 8))
            k += 8
            time.sleep(0.05)

    feed = threading.Thread(target=writer)
    try:
        feed.start()
        wait_for(lambda: db.count() > 0, 60, "the first outcomes")
        time.sleep(1.0)
        resume(model, overrides={"max_steps": 140})  # the run trains on: a newer checkpoint, last.json moves
        second = checkpoint.find(model)
        wait_for(lambda: _sha_runs(db)[-1] == _weights_sha(second), 60, "the newer checkpoint to grade")
        bad = model / "checkpoints" / "step-00000999-abcdef"
        shutil.copytree(second, bad)
        blob = bytearray((bad / "model.safetensors").read_bytes())
        blob[-1] ^= 0xFF
        (bad / "model.safetensors").write_bytes(bytes(blob))
        (model / "checkpoints" / "last.json").write_text(json.dumps({"dir": bad.name, "step": 999}))
        time.sleep(1.5)  # several checks of the pointer
        stop.set()
        feed.join()
        with db.engine.connect() as c:
            n = c.execute(text("SELECT max(id) FROM measurements")).scalar()
        wait_for(lambda: db.count() == n, 60, "every row")
        get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)  # noqa: E731
        ready = json.loads(get("/readyz").read())
        metrics = get("/metrics").read().decode()
    finally:
        stop.set()
        code = stop_process(proc)
    log = [json.loads(line) for line in proc.stderr.read().splitlines()]
    assert code == 0, log
    assert_each_graded_once(db, range(1, n + 1))
    assert _sha_runs(db) == [_weights_sha(first), _weights_sha(second)]  # one switch, at one batch boundary
    assert [e["msg"] for e in log].count("model reloaded") == 1
    refused = [e for e in log if e["msg"].startswith("new checkpoint refused")]
    assert len(refused) == 1 and refused[0]["checkpoint"] == bad.name and "SHA-256" in refused[0]["reason"]
    assert ready["model_sha256"] == _weights_sha(second) and ready["model_step"] == 140
    assert f'sha256="{_weights_sha(second)}",step="140"' in metrics and "towerlab_model_reloads_total 1.0" in metrics


def _sha_runs(db) -> list[str]:
    """The weights' SHA-256 of the outcomes in the order they were written, runs of equal values collapsed."""
    with db.engine.connect() as c:
        shas = list(c.execute(text("SELECT model_sha256 FROM towerlab_outcome ORDER BY id")).scalars())
    return [s for i, s in enumerate(shas) if i == 0 or shas[i - 1] != s]


def image_payloads(db_url: str, cfg_url: str, tmp_path, model_run) -> None:
    """PNG/JPEG bytes in a binary column and file paths under a root: decoded to the model's channels, graded once;
    a corrupt image, a path leaving the root and an image of another size are error outcomes naming what is wrong."""
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, Table, Text

    engine = create_engine(db_url)
    md = MetaData()
    photos = Table(
        "photos",
        md,
        Column("id", BigInteger, primary_key=True),
        Column("label", Integer),
        Column("png", LargeBinary),
        Column("path", Text),
    )
    with engine.begin() as c:
        for t in ("photos", "towerlab_outcome", "towerlab_state", "towerlab_gap"):
            c.execute(text(f"DROP TABLE IF EXISTS {t}"))
    md.create_all(engine)
    d, root = load_digits(), tmp_path / "pictures"
    (root / "line").mkdir(parents=True)
    rows = []
    for i in range(60):
        im = Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8))
        im = im.convert("RGB") if i % 3 == 0 else im  # colour files for a grey model: converted
        buf = io.BytesIO()
        im.save(buf, format="PNG" if i % 2 else "JPEG", quality=95)
        (root / "line" / f"{i}.png").write_bytes(buf.getvalue())
        rows.append({"id": i + 1, "label": int(d.target[i]), "png": buf.getvalue(), "path": f"line/{i}.png"})
    (tmp_path / "secret.png").write_bytes(rows[0]["png"])
    big = io.BytesIO()
    Image.new("L", (16, 16)).save(big, format="PNG")
    rows += [
        {"id": 100, "label": 0, "png": b"\x89PNG not really", "path": "line/missing.png"},
        {"id": 101, "label": 0, "png": big.getvalue(), "path": "../secret.png"},
    ]
    with engine.begin() as c:
        c.execute(photos.insert(), rows)
    for kind, column in (("image", "png"), ("path", "path")):
        cfg = write_config(
            tmp_path / f"{kind}.yaml",
            cfg_url,
            model_run,
            name=f"photos_{kind}",
            table="photos",
            payload={"kind": kind, "column": column, **({"root": str(root)} if kind == "path" else {})},
        )
        for _ in range(2):  # the second pass grades nothing again
            proc = run_serve(cfg, "--once")
            assert proc.returncode == 0, proc.stderr
        with engine.connect() as c:
            out = {
                r.row_key: r
                for r in c.execute(
                    text(
                        "SELECT o.row_key, o.status, o.class_name, o.error, p.label FROM towerlab_outcome o "
                        "JOIN photos p "
                        "ON p.id = o.row_key WHERE o.source = :s ORDER BY o.row_key"
                    ),
                    {"s": f"photos_{kind}"},
                )
            }
        assert sorted(out) == [*range(1, 61), 100, 101]
        ok = [r for r in out.values() if r.status == "ok"]
        assert len(ok) == 60 and sum(r.class_name == str(r.label) for r in ok) / 60 > 0.8
        if kind == "image":
            assert (
                "not a PNG, JPEG, BMP, TIFF or WebP image" in out[100].error
                and "16x16 but the model takes 8x8" in out[101].error
            )
        else:
            assert "no file 'line/missing.png'" in out[100].error and "leaves the root folder" in out[101].error
