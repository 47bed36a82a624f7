"""Your own data at speed: predicting a folder of image files, and serving images from a table.

    TOWERLAB_DATA=../shared/data python bench/own_data.py [--images 10000] [--rows 2000] [--repeats 3]

1. `towerlab predict RUN DIR` (infer.predict_folder: decode, resize, batch, model, CSV) on N PNG files written from
   the real MNIST test images, against the plain reference a user would write: a torch DataLoader over the same
   files decoded with PIL, the same model, batch 64, no CSV. Images/s of each, and the ratio.
2. `towerlab serve --once` grading N rows of SQLite whose payload is a PNG (kind: image) against the same pixels as
   comma-separated text (kind: text). Rows/s of each, and the ratio.
Both sides run in this one process, one after the other, on the same files, the median of --repeats. Writes
bench/out/own_data.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_pngs(root: Path, n: int) -> Path:
    from PIL import Image

    from towerlab.data import mnist

    x, y = mnist.load_split(Path(os.environ["TOWERLAB_DATA"]) / "mnist", "test")
    for i in range(n):
        d = root / str(int(y[i % len(y)]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i % len(x), 0].numpy()).save(d / f"{i:05d}.png")
    return root


def reference(run: Path, files: list[Path]) -> float:
    """A plain PIL + DataLoader loop over the files: decode, to float, model, softmax."""
    import numpy as np
    import torch
    from PIL import Image

    from towerlab import infer

    loaded = infer.load(run, "last")

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            with Image.open(files[i]) as im:
                return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.uint8).copy())[None]

    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(Files(), batch_size=64):
            loaded.model(batch.float() / 255).softmax(1)
    return len(files) / (time.perf_counter() - t0)


def towerlab_predict(run: Path, root: Path, out: Path, n: int) -> float:
    from towerlab import infer

    t0 = time.perf_counter()
    done = infer.predict_folder(run, root, out)
    assert done["rows"] == n, done
    return n / (time.perf_counter() - t0)


def serve_rows(run: Path, work: Path, n: int, kind: str) -> float:
    import yaml
    from PIL import Image
    from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, Table, Text, create_engine

    from towerlab.data import mnist

    x, _ = mnist.load_split(Path(os.environ["TOWERLAB_DATA"]) / "mnist", "test")
    db = work / f"{kind}.db"
    db.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{db}")
    md = MetaData()
    t = Table("rows", md, Column("id", BigInteger, primary_key=True), Column("png", LargeBinary), Column("vals", Text))
    md.create_all(engine)
    rows = []
    for i in range(n):
        pixels = x[i % len(x), 0].numpy()
        if kind == "image":
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            rows.append({"id": i + 1, "png": buf.getvalue(), "vals": None})
        else:
            rows.append({"id": i + 1, "png": None, "vals": ",".join(map(str, pixels.flatten().tolist()))})
    with engine.begin() as c:
        c.execute(t.insert(), rows)
    payload = (
        {"kind": "image", "column": "png"}
        if kind == "image"
        else {"kind": "text", "column": "vals", "height": 28, "width": 28}
    )
    cfg = {
        "database": f"sqlite:///{db}",
        "model": str(run),
        "sources": [
            {
                "name": kind,
                "table": "rows",
                "key_column": "id",
                "payload": payload,
                "batch_size": 256,
                "normalize": {"kind": "fixed", "offset": 0, "scale": 255},
            }
        ],
    }
    (work / f"{kind}.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "towerlab", "serve", str(work / f"{kind}.yaml"), "--once"],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    from towerlab.data.folder import image_files

    work = Path(tempfile.mkdtemp(prefix="towerlab-own-"))
    run = work / "run"
    subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "mnist", "--max-steps", "30", "--out", str(run), "--no-report"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = write_pngs(work / "pngs", args.images)
    files = image_files(root)
    ours = [towerlab_predict(run, root, work / "p.csv", len(files)) for _ in range(args.repeats)]
    plain = [reference(run, files) for _ in range(args.repeats)]
    served = {k: [serve_rows(run, work, args.rows, k) for _ in range(args.repeats)] for k in ("image", "text")}
    table = [
        ("predict a folder (images/s)", statistics.median(ours), statistics.median(plain), "PIL + DataLoader"),
        (
            "serve rows (rows/s)",
            statistics.median(served["image"]),
            statistics.median(served["text"]),
            "the same pixels as text",
        ),
    ]
    print(f"{'':30s} {'towerlab':>10s} {'reference':>10s} {'ratio':>6s}  reference")
    for name, a, b, ref in table:
        print(f"{name:30s} {a:10.0f} {b:10.0f} {a / b:6.2f}  {ref}")
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "images": args.images,
        "rows": args.rows,
        "repeats": args.repeats,
        "predict_folder_images_s": ours,
        "reference_images_s": plain,
        "serve_image_rows_s": served["image"],
        "serve_text_rows_s": served["text"],
    }
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/own_data.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
