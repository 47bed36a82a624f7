"""Data at its real size: the in-memory loader against the stream (issue 44).

    TOWERLAB_DATA=../shared/data python bench/stream.py rss   [--sizes 1000 10000 50000] [--image-size 96x96]
    TOWERLAB_DATA=../shared/data python bench/stream.py speed [--steps 300] [--workers 2]
    TOWERLAB_DATA=../shared/data python bench/stream.py seg   [--steps 40] [--repeats 2] [--crop 256x256]
    TOWERLAB_DATA=../shared/data python bench/stream.py smiles --before REV [--repeats 2]
    TOWERLAB_DATA=../shared/data python bench/stream.py listing [--sizes 1000 10000 50000] [--repeats 5]

rss: an image folder of the first N training images of the complete CIFAR-10 (written once as PNG under --out),
trained for a few steps by `towerlab train mlp --dataset mnist --image-size HxW --loader memory|stream` (a small
model, grey images: what grows is the data, not the network's memory); the peak resident memory of the largest
process of the command (the trainer or a worker: the kernel's ru_maxrss of the waited-for children), per size. The
stream's should stay flat; memory's grows with N.

speed: images a second of the same training step (the tutorial CNN, its transforms on the batch, SGD) fed by
  - memory: towerlab's in-memory loader over the complete CIFAR-10 binary batches,
  - stream-records: towerlab's stream over the same batches, memory-mapped,
  - stream-png: towerlab's stream over 50,000 PNG files (the same images),
  - plain-png: the reference: a torch DataLoader over a PIL image-folder dataset (what torchvision's ImageFolder
    does: open, convert, to a uint8 tensor; torchvision itself cannot be installed beside this torch build), the
    same workers, batch and order,
all in this one process, one after the other, each after a warm-up of 20 steps. Ratios are what compare.

seg: FCN-8s on the real CamVid (367 training pairs of 360x480), `towerlab train fcn8s --loader memory|stream`
(a narrow net, --width 0.125 --fc-channels 64, batch 4, full-size images: the data's share of the work is large),
each way in a process of its own, alternating, --repeats times: the run's own images/s (final_metrics.json,
evaluation left out) and the command's peak resident memory.
smiles: the peak resident memory of `towerlab train smiles-lstm` on MOSES's 1.6M training molecules (a small
LSTM, 3 steps, no evaluation: what is measured is the corpus the process holds), this checkout against the commit
--before (checked out under --out/before, run with its own src on PYTHONPATH): before and after a change to how a
corpus is held, in the same run.
listing: the file list of the PNG folders of `rss`: the plain walk (os.walk, a stat per file: what every start did
before the listing was cached), towerlab's walk_files with no cached listing (the walk, then the listing kept), and
walk_files with it (one stat per folder), each --repeats times in this process; medians.
Prints tables and writes --out/<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist_full import cpu_name  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_png_folder(root: Path, n: int, data: Path) -> Path:
    """The first n training images of cifar10_full as root/train/<class>/<i>.png and 1,000 test images as
    root/val/<class>/<i>.png (written once; a folder that is complete is reused)."""
    from PIL import Image

    from towerlab.data import cifar

    done = root / ".complete"
    if done.is_file():
        return root
    for split, count, name in (("train", n, "train"), ("val", 1000, "test")):
        images, labels = cifar.load_split(data / "cifar10_full", name)
        for i in range(count):
            folder = root / split / CLASSES[int(labels[i])]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    done.write_text("ok\n")
    return root


def peak_rss(cmd: list[str]) -> float:
    """MB: the largest resident set of the command's processes, as the kernel counted it (children waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        cmd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TOWERLAB_REPORT": "0"},
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise SystemExit("ru_maxrss did not grow: run each size in a fresh bench process (--sizes N)")
    return after / 1024


def rss(args, data: Path) -> dict:
    rows = []
    for n in args.sizes:
        folder = write_png_folder(Path(args.out) / f"png-{n}", n, data)
        for loader in ("memory", "stream"):
            out = Path(args.out) / f"rss-{n}-{loader}"
            cmd = [
                sys.executable,
                "-m",
                "towerlab",
                "train",
                "mlp",
                "--data",
                str(folder),
                "--image-size",
                args.image_size,
                "--units",
                "64",
                "--loader",
                loader,
                "--max-steps",
                "5",
                "--batch-size",
                "64",
                "--eval-every-steps",
                "0",
                "--eval-every-epochs",
                "0",
                "--eval-limit",
                "256",
                "--out",
                str(out),
                "--no-report",
            ]
            subprocess.run(["rm", "-rf", str(out)], check=True)
            # each measurement in a process of its own: ru_maxrss of children is a maximum over all of them
            code = (
                f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import stream; "
                f"print(stream.peak_rss({cmd!r}))"
            )
            mb = float(
                subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()[
                    -1
                ]
            )
            rows.append({"images": n, "loader": loader, "peak_rss_mb": mb})
            print(f"{n} images, {loader}: {mb:.0f} MB", flush=True)
    print(f"| images ({args.image_size}, grey) | memory: peak RSS (MB) | stream: peak RSS (MB) |")
    print("|---|---|---|")
    for n in args.sizes:
        m = next(r["peak_rss_mb"] for r in rows if r["images"] == n and r["loader"] == "memory")
        s = next(r["peak_rss_mb"] for r in rows if r["images"] == n and r["loader"] == "stream")
        print(f"| {n:,} | {m:.0f} | {s:.0f} |")
    streams = [r["peak_rss_mb"] for r in rows if r["loader"] == "stream"]
    print(f"stream: {max(streams) - min(streams):.0f} MB between the smallest and the largest set")
    return {"rows": rows, "image_size": args.image_size}


# -- speed --------------------------------------------------------------------------------------------------------
class PlainFolder:
    """The reference: an image folder read as torchvision's ImageFolder + PILToTensor would (per item: open,
    convert to RGB, to a uint8 CHW tensor)."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        import numpy as np
        import torch
        from PIL import Image

        path, label = self.pairs[i]
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), label


def speed(args, data: Path) -> dict:
    import torch

    from towerlab import config
    from towerlab.data import cifar
    from towerlab.data import folder as folder_data
    from towerlab.data.loader import TensorLoader
    from towerlab.data.stream import FileItems, StreamReader, materialize
    from towerlab.dist import Dist
    from towerlab.recipes import cifar10

    torch.manual_seed(0)
    cfg = config.build(cifar10.Config, None, {"data": str(data / "cifar10_full")})
    model = cifar10.TutorialCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    transform = cifar10.train_transform(cfg)
    dist, b = Dist(), args.batch_size

    def step(x, y):
        x, y = transform(x, y)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def timed(batches) -> float:
        it = iter(batches)
        for _ in range(20):  # warm-up: workers started, caches filled
            step(*next(it))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(*next(it))
        return args.steps * b / (time.perf_counter() - t0)

    records = cifar.items(data / "cifar10_full", "train")
    png = write_png_folder(Path(args.out) / "png-50000", 50000, data)
    pairs, _ = folder_data.items(png, list(CLASSES))
    results = {}
    for rep in range(args.repeats):
        ways = {
            "memory": lambda rep=rep: TensorLoader(materialize(records, "training"), b, dist, train=True, seed=rep),
            "stream-records": lambda rep=rep: TensorLoader(
                None, b, dist, train=True, seed=rep, reader=StreamReader(records, args.workers)
            ),
            "stream-png": lambda rep=rep: TensorLoader(
                None, b, dist, train=True, seed=rep, reader=StreamReader(FileItems(pairs, (3, 32, 32)), args.workers)
            ),
            "plain-png": lambda rep=rep: plain_loader(pairs, b, args.workers, rep),
        }
        for name, make in ((k, v) for k, v in ways.items() if not args.only or k in args.only):
            loader = make()
            results.setdefault(name, []).append(timed(loader))
            print(f"repeat {rep}: {name}: {results[name][-1]:.0f} images/s", flush=True)
            del loader
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"| feeding the tutorial CNN's training step (batch {b}, {args.workers} workers) | images/s (median of "
        f"{args.repeats}) | vs memory | vs the plain PNG reference |"
    )
    print("|---|---|---|---|")
    for k, v in med.items():
        vs_memory = f"{v / med['memory']:.2f}x" if "memory" in med else "-"
        vs_plain = f"{v / med['plain-png']:.2f}x" if "plain-png" in med else "-"
        print(f"| {k} | {v:.0f} | {vs_memory} | {vs_plain} |")
    return {"images_per_s": results, "median": med, "batch_size": b, "workers": args.workers, "steps": args.steps}


def plain_loader(pairs, b: int, workers: int, seed: int):
    """The reference's batches in the same order as towerlab's (a permutation of (seed, epoch 0)), stacked by the
    DataLoader's default collate."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003)
    order = torch.randperm(len(pairs), generator=g).tolist()
    sampler = [order[i : i + b] for i in range(0, len(order) - b + 1, b)]
    return torch.utils.data.DataLoader(
        PlainFolder(pairs), batch_sampler=sampler, num_workers=workers, prefetch_factor=4 if workers else None
    )


def seg_cmd(args, data: Path, way: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "towerlab", "train", "fcn8s", "--data", str(data / "camvid"), "--width", "0.125",
        "--fc-channels", "64", "--batch-size", "4", "--max-steps", str(args.steps), "--eval-every-epochs", "0",
        "--eval-limit", "4", "--loader", way, "--workers", str(args.workers), "--out", str(out), "--no-report",
        "--deterministic", *_crop_args(args),
    ]  # fmt: skip


def _crop_args(args) -> list[str]:
    """--crop HxW: the training pairs scaled (0.5-2x) and cropped where they are read, as mmsegmentation trains."""
    if not args.crop:
        return []
    h, _, w = args.crop.partition("x")
    return ["--crop-height", h, "--crop-width", w, "--scale-min", "0.5", "--scale-max", "2.0"]


def seg(args, data: Path) -> dict:
    rows = []
    for r in range(args.repeats):
        for way in ("memory", "stream"):
            out = Path(args.out) / f"seg-{way}-{r}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            cmd = [sys.executable, __file__, "seg-one", "--way", way, "--steps", str(args.steps)]
            cmd += ["--workers", str(args.workers), "--out", str(out), *(["--crop", args.crop] if args.crop else [])]
            got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rows.append({"way": way, "repeat": r, **got})
    table = {}
    for way in ("memory", "stream"):
        mine = [x for x in rows if x["way"] == way]
        table[way] = {
            "images_per_s": statistics.median(x["images_per_s"] for x in mine),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in mine),
            "mean_iou": sorted({x["mean_iou"] for x in mine}),  # --deterministic: one value, the same both ways
        }
    print("| loader | images/s (median) | peak RSS (MB) | mean IU after the steps |\n|---|---|---|---|")
    for way, v in table.items():
        print(f"| {way} | {v['images_per_s']:.1f} | {v['peak_rss_mb']:.0f} | {v['mean_iou']} |")
    ratio = table["stream"]["images_per_s"] / table["memory"]["images_per_s"]
    print(f"stream / memory images/s: {ratio:.2f}")
    return {"rows": rows, "table": table, "stream_over_memory": ratio}


def seg_one(args, data: Path) -> dict:
    """One way, in this fresh process: the run's images/s and the peak RSS of its processes."""
    out = Path(args.out)
    rss_mb = peak_rss(seg_cmd(args, data, args.way, out))
    final = json.loads((out / "final_metrics.json").read_text())
    return {"images_per_s": final["images_per_s"], "peak_rss_mb": rss_mb, "mean_iou": final["mean_iou"]}


def smiles(args, data: Path) -> dict:
    here = Path(__file__).resolve().parent.parent
    before = Path(args.out).resolve() / "before"
    if not before.is_dir():
        subprocess.run(["git", "-C", str(here), "worktree", "add", "--detach", str(before), args.before], check=True)
    rows = []
    for repeat in range(args.repeats):
        for name, src in (("before", before / "src"), ("this checkout", here / "src")):
            out = Path(args.out) / f"smiles-{repeat}-{name.replace(' ', '-')}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            cmd = [
                sys.executable,
                "-m",
                "towerlab",
                "train",
                "smiles-lstm",
                "--data",
                str(data / "moses" / "train.csv.gz"),
            ]
            cmd += [
                "--hidden",
                "32",
                "--layers",
                "1",
                "--embedding",
                "8",
                "--max-steps",
                "3",
                "--eval-every-steps",
                "0",
            ]
            cmd += ["--eval-every-epochs", "0", "--eval-samples", "0", "--out", str(out), "--no-report"]
            env = {**os.environ, "PYTHONPATH": str(src)}
            code = (
                f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import stream; "
                f"print(stream.peak_rss({cmd!r}))"
            )
            run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
            mb = float(run.stdout.split()[-1])
            rows.append({"repeat": repeat, "code": name, "peak_rss_mb": mb})
            print(f"repeat {repeat}, {name}: {mb:.0f} MB", flush=True)
    print(f"| code | peak RSS (MB), each of {args.repeats} runs |")
    print("|---|---|")
    for name in ("before", "this checkout"):
        print(f"| {name} | " + ", ".join(f"{r['peak_rss_mb']:.0f}" for r in rows if r["code"] == name) + " |")
    return {"rows": rows, "before": args.before}


def listing(args, data: Path) -> dict:
    import tempfile

    from towerlab import files

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()  # a cache of this run's own
    rows = []
    for n in args.sizes:
        folder = write_png_folder(Path(args.out) / f"png-{n}", n, data)
        times = {"plain walk": [], "walk_files, not cached": [], "walk_files, cached": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            plain = files._walk(folder)[0]
            times["plain walk"].append(time.perf_counter() - t0)
            files._listing_file(folder).unlink(missing_ok=True)
            for way in ("walk_files, not cached", "walk_files, cached"):
                t0 = time.perf_counter()
                got = files.walk_files(folder)
                times[way].append(time.perf_counter() - t0)
                assert got == plain, way
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"files": len(plain), **{k: v for k, v in med.items()}})
    print(f"| files | {' | '.join(f'{k} (s)' for k in times)} | cached / plain |")
    print("|---" * (len(times) + 2) + "|")
    for r in rows:
        cells = [f"{r[k]:.3f}" for k in times]
        print(f"| {r['files']:,} | {' | '.join(cells)} | {r['walk_files, cached'] / r['plain walk']:.2f}x |")
    return {"rows": rows, "repeats": args.repeats}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("rss", "speed", "seg", "seg-one", "smiles", "listing"))
    p.add_argument("--before", default="HEAD~1", help="smiles: the commit to compare this checkout with")
    p.add_argument("--way", choices=("memory", "stream"), help="seg-one: which loader")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    p.add_argument("--image-size", default="96x96")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--crop", help="seg: HxW crops scaled and cut where the pairs are read (e.g. 256x256)")
    p.add_argument("--only", nargs="*", help="speed: only these ways (memory, stream-records, stream-png, plain-png)")
    p.add_argument("--out", default="bench/out/stream")
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    data = Path(os.environ["TOWERLAB_DATA"]).resolve()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(["python", *sys.argv]), "cpu": cpu_name(), "cores": os.cpu_count()}
    if args.mode == "seg-one":  # one measurement for `seg`, as JSON on stdout
        print(json.dumps(seg_one(args, data)))
        return 0
    ways = {"rss": rss, "speed": speed, "seg": seg, "smiles": smiles, "listing": listing}
    report.update(ways[args.mode](args, data))
    (Path(args.out) / f"{args.mode}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
