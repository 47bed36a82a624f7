"""towerlab serve on a real PostgreSQL server: throughput against a plain reference loop, and latency.

    TOWERLAB_DATA=../shared/data python bench/serve.py [--rows 20000] [--batch 512] [--rate 200 --seconds 15]

Starts a throwaway PostgreSQL cluster on 127.0.0.1 (as the tests do), trains a small mnist model on the real
MNIST files, and fills a table with real 28x28 MNIST test images as delimited text (784 values a row).
  throughput: rows/s graded by `towerlab serve --once` (in process), with the model on PyTorch and exported to
              ONNX on ONNX Runtime, vs a plain loop that a user might write: SELECT the next rows by id, parse,
              one forward pass, INSERT the grades, COMMIT (no watermark table, no anti-join, no images: the
              minimum that does the job once, with none of the guarantees).
  programs:   the one-file programs (`make exe`: ONNX Runtime; `make exe-torch`: PyTorch; --build makes them):
              size, start-up (a --once run over an empty table: start, connect, load the model, one poll) and
              rows/s (the same over the full table, start-up subtracted).
  latency:    the service running as its own process with a 0.5 s poll interval while rows are inserted at
              a steady rate; insert-to-grade time = scored_at - inserted_at, median and p99; polling alone, then
              with `notify: true` and the trigger of `--install-trigger` (LISTEN/NOTIFY wake-ups).
Prints a table and writes bench/out/serve.json. Targets (issue 6): >= 2,000 rows/s on the CPU; p99 <= interval + 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "serve"))  # serve_helpers
from towerlab import config  # noqa: E402
from towerlab.data import mnist  # noqa: E402
from towerlab.engine import fit  # noqa: E402
from towerlab.export import export  # noqa: E402
from towerlab.recipes import mnist as mnist_recipe  # noqa: E402
from towerlab.serve import settings as settings_mod  # noqa: E402
from towerlab.serve.onnx_scorer import OnnxScorer  # noqa: E402
from towerlab.serve.scorer import TorchScorer as Scorer  # noqa: E402
from towerlab.serve.worker import Service  # noqa: E402

from serve_helpers import Postgres, pg_bin  # noqa: E402  the tests' throwaway-cluster helper


def payloads(n: int) -> list[str]:
    images, _ = mnist.load_split(Path(os.environ["TOWERLAB_DATA"]) / "mnist", "test")
    flat = images.reshape(len(images), -1).numpy()
    return [",".join(map(str, flat[i % len(flat)])) for i in range(n)]


def fill(engine, texts: list[str], start: int = 1) -> None:
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO m (id, vals) VALUES (:i, :v)"), [{"i": start + i, "v": t} for i, t in enumerate(texts)]
        )


def reset(engine) -> None:
    with engine.begin() as c:
        for t in ("m", "towerlab_outcome", "towerlab_state", "towerlab_gap", "plain_outcome"):
            c.execute(text(f"DROP TABLE IF EXISTS {t}"))
        c.execute(
            text("CREATE TABLE m (id BIGINT PRIMARY KEY, vals TEXT, inserted_at TIMESTAMPTZ DEFAULT clock_timestamp())")
        )
        c.execute(text("CREATE TABLE plain_outcome (row_key BIGINT, class_index INT, probability REAL)"))


def plain_reference(engine, model, batch: int) -> int:
    """Grade every row once: select by id, parse, forward, insert, commit."""
    last, done = 0, 0
    while True:
        with engine.begin() as c:
            rows = c.execute(
                text("SELECT id, vals FROM m WHERE id > :l ORDER BY id LIMIT :n"), {"l": last, "n": batch}
            ).all()
            if not rows:
                return done
            x = (
                torch.from_numpy(np.array([np.array(r.vals.split(","), dtype=np.float32) for r in rows])).reshape(
                    -1, 1, 28, 28
                )
                / 255
            )
            with torch.no_grad():
                probs = model(x).softmax(1)
            p, k = probs.max(1)
            c.execute(
                text("INSERT INTO plain_outcome VALUES (:r, :k, :p)"),
                [{"r": r.id, "k": int(ki), "p": float(pi)} for r, ki, pi in zip(rows, k, p)],
            )
            last, done = rows[-1].id, done + len(rows)


def write_cfg(path: Path, url: str, model: Path, batch: int, interval: float, notify: bool = False) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "database": url,
                "model": str(model),
                "sources": [
                    {
                        "name": "m",
                        "table": "m",
                        "key_column": "id",
                        "interval_s": interval,
                        "batch_size": batch,
                        "notify": notify,
                        "payload": {"kind": "text", "column": "vals", "height": 28, "width": 28},
                        "normalize": {"kind": "fixed", "scale": 255},
                    }
                ],
            }
        )
    )
    return path


def throughput(engine, cfg: Path, model_dir: Path, onnx_file: Path, rows: int, batch: int, repeats: int) -> dict:
    texts = payloads(rows)
    scorers = {"torch": Scorer(model_dir), "onnx": OnnxScorer(onnx_file)}
    res = {"torch": [], "onnx": [], "plain": []}
    order = list(res)
    for _ in range(repeats):
        for way in order:
            reset(engine)
            fill(engine, texts)
            t = time.perf_counter()
            if way == "plain":
                plain_reference(engine, scorers["torch"].current.model.model, batch)
            else:
                Service(settings_mod.load(cfg), scorers[way]).run(once=True)
            res[way].append(rows / (time.perf_counter() - t))
            table = "plain_outcome" if way == "plain" else "towerlab_outcome"
            with engine.connect() as c:  # each graded every row
                assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar() == rows
        order = order[1:] + order[:1]
    return {k: statistics.median(v) for k, v in res.items()} | {"repeats": res}


def programs(engine, cfgs: dict[str, Path], rows: int) -> dict:
    """Size, start-up and rows/s of each built one-file program."""
    texts, out = payloads(rows), {}
    for name, (exe, cfg) in cfgs.items():
        if not exe.is_file():
            continue
        timing = {}
        for phase, n in (("empty", 0), ("full", rows)):
            reset(engine)
            if n:
                fill(engine, texts)
            t = time.perf_counter()
            subprocess.run([str(exe), str(cfg), "--once"], check=True, capture_output=True, timeout=600)
            timing[phase] = time.perf_counter() - t
        out[name] = {
            "path": str(exe),
            "size_mib": exe.stat().st_size / 2**20,
            "start_s": timing["empty"],
            "rows_per_s": rows / max(timing["full"] - timing["empty"], 1e-9),
            "once_s": timing["full"],
        }
    return out


def latency(engine, cfg: Path, rate: float, seconds: float, interval: float, install: bool = False) -> dict:
    reset(engine)
    if install:
        subprocess.run([sys.executable, "-m", "towerlab", "serve", str(cfg), "--install-trigger"], check=True)
    texts = payloads(int(rate * seconds))
    proc = subprocess.Popen([sys.executable, "-m", "towerlab", "serve", str(cfg)], stderr=subprocess.DEVNULL)
    time.sleep(4)  # model load and first polls
    t0, i = time.perf_counter(), 0
    while i < len(texts):  # steady inserts, 10 commits a second
        due = t0 + i / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        n = max(1, int(rate / 10))
        fill(engine, texts[i : i + n], start=i + 1)
        i += n
    deadline = time.time() + 30
    with engine.connect() as c:
        while c.execute(text("SELECT count(*) FROM towerlab_outcome")).scalar() < len(texts) and time.time() < deadline:
            time.sleep(0.2)
            c.commit()
        lat = [
            r[0]
            for r in c.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM o.scored_at - m.inserted_at) FROM towerlab_outcome o "
                    "JOIN m ON m.id = o.row_key"
                )
            )
        ]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    lat = sorted(float(x) for x in lat)
    return {
        "rows": len(lat),
        "rate_rows_per_s": rate,
        "interval_s": interval,
        "median_s": statistics.median(lat),
        "p99_s": lat[int(0.99 * (len(lat) - 1))],
        "max_s": lat[-1],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--build", action="store_true", help="build both one-file programs first (make exe exe-torch)")
    p.add_argument("--out", default="bench/out/serve.json")
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA") or pg_bin() is None:
        sys.exit("needs TOWERLAB_DATA (the real MNIST files) and PostgreSQL server binaries")
    tmp = Path(tempfile.mkdtemp(prefix="towerlab-bench-serve-"))
    model_dir = tmp / "mnist"
    fit(
        mnist_recipe,
        config.build(
            mnist_recipe.Config,
            None,
            {
                "data": str(Path(os.environ["TOWERLAB_DATA"]) / "mnist"),
                "max_steps": 30,
                "eval_every_epochs": 0.0,
                "log_every": 10,
            },
        ),
        out=model_dir,
    )
    onnx_file = Path(export(model_dir, "onnx", tmp / "mnist.onnx")["path"])
    if args.build:
        subprocess.run(["make", "exe", "exe-torch"], cwd=REPO, check=True)
    pg = Postgres(pg_bin())
    try:
        engine = create_engine(pg.resolved_url())
        cfg = write_cfg(tmp / "serve.yaml", pg.url, model_dir, args.batch, args.interval)
        onnx_cfg = write_cfg(tmp / "serve-onnx.yaml", pg.url, onnx_file, args.batch, args.interval)
        thr = throughput(engine, cfg, model_dir, onnx_file, args.rows, args.batch, args.repeats)
        progs = programs(
            engine,
            {
                "onnx (make exe)": (REPO / "dist" / "towerlab-serve", onnx_cfg),
                "torch (make exe-torch)": (REPO / "dist" / "towerlab-serve-torch", cfg),
            },
            args.rows,
        )
        lat = latency(engine, cfg, args.rate, args.seconds, args.interval)
        notify_cfg = write_cfg(tmp / "serve-notify.yaml", pg.url, model_dir, args.batch, args.interval, notify=True)
        lat_notify = latency(engine, notify_cfg, args.rate, args.seconds, args.interval, install=True)
    finally:
        pg.close()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "torch": torch.__version__,
        "rows": args.rows,
        "batch": args.batch,
        "throughput_rows_per_s": thr,
        "latency": lat,
        "latency_notify": lat_notify,
        "programs": progs,
        "towerlab_over_plain": thr["torch"] / thr["plain"],
        "onnx_over_torch": thr["onnx"] / thr["torch"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\n{report['machine']}, PostgreSQL on loopback, mnist model, {args.rows} rows of 28x28, batch {args.batch}")
    print(
        f"{'':26s} {'serve (PyTorch)':>16s} {'serve (ONNX RT)':>16s} {'plain loop':>11s} {'torch/plain':>11s} "
        f"{'onnx/torch':>10s}"
    )
    print(
        f"{'rows/s (median of ' + str(args.repeats) + ')':26s} {thr['torch']:16.0f} {thr['onnx']:16.0f} "
        f"{thr['plain']:11.0f} {report['towerlab_over_plain']:11.2f} {report['onnx_over_torch']:10.2f}"
    )
    if progs:
        print(f"{'one-file program':26s} {'size MiB':>9s} {'start-up s':>11s} {'rows/s':>8s}")
        for name, r in progs.items():
            print(f"{name:26s} {r['size_mib']:9.0f} {r['start_s']:11.2f} {r['rows_per_s']:8.0f}")
    for name, r in (("polling", lat), ("polling + NOTIFY", lat_notify)):
        print(
            f"latency, {name}, at {args.rate:.0f} rows/s, poll {args.interval} s: "
            f"median {r['median_s'] * 1000:.0f} ms, "
            f"p99 {r['p99_s'] * 1000:.0f} ms, max {r['max_s'] * 1000:.0f} ms ({r['rows']} rows)"
        )
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
