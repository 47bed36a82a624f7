"""Training throughput: a plain PyTorch loop vs towerlab's fit, in one run, as ratios.

    python bench/throughput.py                      # every image recipe, on the GPU if visible, else the CPU
    python bench/throughput.py --recipes cifar10 --steps 300 --window 50 --repeats 3
    python bench/throughput.py --recipes fcn8s segdec        # the segmentation issues' settings (GPU-sized)
    python bench/throughput.py --recipes chemvae             # molecules/s (the columns say images/s: items)

For each recipe, these ways, the same model and batch size:
  (a)  plain:        a hand-written loop: DataLoader over host tensors, eager fp32, the recipe's batch augmentation
  (a') plain+alloc:  the same loop with the host-allocator setting fit makes on the CPU (towerlab.perf)
  (b)  fit:          towerlab's fit with identical settings (host data, fp32, no compile, no EMA, constant lr)
  (c)  fast:         fit --fast: what it chooses for the device (printed under the table)
  (L)  when the lightning package is installed: the same model, loop and DataLoader under a Lightning Trainer
Each measurement runs in a fresh process and is timed over windows of --window steps, each ending with a host sync
(loss.item()); the first window (warm-up, compilation) is dropped and the median window rate kept. The ways are
interleaved --repeats times in rotating order; the table shows each way's median rate and the spread of its repeats,
and the median of the per-repeat ratios; a note says when a ratio's gap from 1 is inside the spread.
Real data from $TOWERLAB_DATA. Writes bench/out/throughput.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from towerlab import config, perf
from towerlab.data.loader import pad_stack
from towerlab.dist import Dist
from towerlab.engine import fit
from towerlab.recipes import get
from towerlab.recipes.contract import Step

STEP = Step(10**6, 10**6, 1.0)  # past any warm-up: the steady-state loss
try:
    import lightning  # noqa: F401  an extra column when the machine has it

    HAVE_LIGHTNING = True
except ImportError:
    HAVE_LIGHTNING = False


def host_loader(recipe, cfg, device):
    """What a user writes by hand: a torch DataLoader over the host copy of the training data (items of different
    sizes padded per batch by a collate function), and the recipe's batch augmentation."""
    host = config.build(type(cfg), None, {**vars(cfg), "data_on_device": False})
    data = recipe.build_data(host, Dist())
    train = data.train
    fields = train.tensors
    if isinstance(fields[0], list):  # variable-size items (segmentation): pad each batch to its largest item
        dataset = list(zip(*fields))
        collate = lambda items: tuple(pad_stack(list(f), v) for f, v in zip(zip(*items), train.pad))  # noqa: E731
    else:
        dataset, collate = TensorDataset(*fields), None
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    return loader, train.transform or (lambda *batch: batch), data


def plain_optimizer(cfg, params):
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rms_decay, eps=cfg.eps)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def plain_loop(recipe, cfg, device, steps: int, window: int) -> list[float]:
    """The reference: what a user writes by hand. Returns images/s per window."""
    torch.manual_seed(cfg.seed)
    loader, transform, data = host_loader(recipe, cfg, device)
    model = recipe.build_model(cfg, data).to(device)
    opt = plain_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    rates, step, t0 = [], 0, time.perf_counter()
    while step < steps:
        for batch in loader:
            batch = transform(*(t.to(device, non_blocking=True) for t in batch))
            loss, _ = recipe.loss(model, batch, STEP)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % window == 0:
                loss.item()
                now = time.perf_counter()
                rates.append(window * cfg.batch_size / (now - t0))
                t0 = now
            if step >= steps:
                break
    return rates


def lightning_rates(recipe, cfg, device, steps: int, window: int) -> list[float]:
    """The same model and loop under a Lightning Trainer (only when lightning is installed)."""
    import lightning as L

    loader, transform, data = host_loader(recipe, cfg, device)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(cfg.seed)
            self.model = recipe.build_model(cfg, data)

        def training_step(self, batch, i):
            return recipe.loss(self.model, transform(*batch), STEP)[0]

        def configure_optimizers(self):
            return plain_optimizer(cfg, [p for p in self.parameters() if p.requires_grad])

    class Windows(L.Callback):
        def __init__(self):
            self.rates, self.t0 = [], time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, i):
            if (i + 1) % window == 0:
                outputs["loss"].item()
                now = time.perf_counter()
                self.rates.append(window * cfg.batch_size / (now - self.t0))
                self.t0 = now

    windows = Windows()
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[windows],
        num_sanity_val_steps=0,
    )
    trainer.fit(Module(), loader)
    return windows.rates


def flops_per_image(recipe, cfg, device) -> float:
    """Forward + backward FLOPs of one training image at the benchmark's size (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    loader, transform, data = host_loader(recipe, config.build(type(cfg), None, {**vars(cfg), "batch_size": 1}), device)
    model = recipe.build_model(cfg, data).to(device)
    batch = transform(*(t.to(device) for t in next(iter(loader))))
    with FlopCounterMode(display=False) as counter:
        recipe.loss(model, batch, STEP)[0].backward()
    return float(counter.get_total_flops())


def matmul_peak(device, dtype) -> float:
    """Measured dense matmul FLOP/s on this device (the denominator of the model FLOPs utilisation)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 20 if device.type == "cuda" else 5
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def fit_rates(recipe, cfg, steps: int, window: int) -> list[float]:
    """fit's own per-window throughput, read back from the run's metrics.jsonl."""
    with tempfile.TemporaryDirectory() as tmp:
        run = dataclasses.replace(cfg, max_steps=steps, log_every=window, eval_every_epochs=0.0)
        fit(recipe, run, out=Path(tmp) / "run")
        rows = [json.loads(line) for line in open(Path(tmp) / "run" / "metrics.jsonl")]
    key = "train/molecules_per_s" if any("train/molecules_per_s" in r for r in rows) else "train/images_per_s"
    return [r[key] for r in rows if key in r]  # molecules a second for the SMILES recipes


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


# The issues' benchmark settings: FCN-8s on 512x512 crops (CamVid zoomed 2x), SegDecNet at KolektorSDD's 1408x512.
SETTINGS = {
    "fcn8s": {"crop_height": 512, "crop_width": 512, "scale_min": 2.0, "scale_max": 2.0, "batch_size": 8},
    "segdec": {"stage": "joint", "height": 1408, "width": 512, "batch_size": 8},
}

WAYS = {
    "plain": "(a) plain",
    "plain_alloc": "(a') plain+alloc",
    "fit": "(b) fit",
    "fast": "(c) fast",
    "lightning": "(L) Lightning",
}


def settings(name: str, args) -> dict:
    """The recipe's benchmark config: fp32, no compile, host data, constant lr, no EMA (what a plain loop does)."""
    base = {
        "seed": 0,
        "ema_decay": 0.0,
        "schedule": "constant",
        "weight_decay": 0.0,
        "precision": "fp32",
        "compile": False,
        "channels_last": False,
        "data_on_device": False,
        **SETTINGS.get(name, {}),
    }
    if args.batch_size:
        base["batch_size"] = args.batch_size
    for item in args.set:  # e.g. --set fcn8s:width=0.125 for a quick CPU check of a big model
        key, value = item.split("=", 1)
        target, _, key = key.rpartition(":")
        if target in ("", name):
            base[key] = yaml.safe_load(value)
    return base


def measure_one(way: str, name: str, args, device: torch.device) -> list[float]:
    """One way's window rates, in this (fresh) process."""
    recipe = get(name)
    base = settings(name, args)
    same = config.build(recipe.Config, None, base)
    if way == "plain":
        return plain_loop(recipe, same, device, args.steps, args.window)
    if way == "plain_alloc":  # the hand-written loop with the allocator setting fit makes on the CPU
        perf.keep_freed_memory()
        return plain_loop(recipe, same, device, args.steps, args.window)
    if way == "fit":
        return fit_rates(recipe, same, args.steps, args.window)
    if way == "fast":  # fit --fast: it chooses the speed settings for the device itself
        fast = config.build(
            recipe.Config, None, {**{k: v for k, v in base.items() if k not in perf.FAST_FIELDS}, "fast": True}
        )
        return fit_rates(recipe, fast, args.steps, args.window)
    return lightning_rates(recipe, same, device, args.steps, args.window)


def in_fresh_process(way: str, name: str, args) -> list[float]:
    """Each measurement in a process of its own: a process's earlier allocations change how fast the next loop runs
    (glibc's malloc thresholds move with them), so no way inherits another's heap."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        way,
        "--recipes",
        name,
        "--steps",
        str(args.steps),
        "--window",
        str(args.window),
        "--batch-size",
        str(args.batch_size),
        *sum((["--set", s] for s in args.set), []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{way} on {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart the repeats of one column landed."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def bench_recipe(name: str, args, device: torch.device) -> dict:
    recipe = get(name)
    ways = [w for w in WAYS if w != "lightning" or HAVE_LIGHTNING]
    runs = {k: [] for k in ways}
    order = list(ways)
    for _ in range(args.repeats):  # rotate the order: no way gets the warm (or the throttled) slot every time
        for k in order:
            runs[k].append(steady(in_fresh_process(k, name, args)))
            print(f"  {name} {k}: {runs[k][-1]:.0f} images/s", file=sys.stderr)
        order = order[1:] + order[:1]
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(runs[k], runs["plain"])) for k in runs if k != "plain"}
    ratio["fit_over_plain_alloc"] = statistics.median(a / b for a, b in zip(runs["fit"], runs["plain_alloc"]))
    spreads = {k: spread(v) for k, v in runs.items()}
    same = config.build(recipe.Config, None, settings(name, args))
    fast, chosen = perf.apply_fast(config.build(recipe.Config, None, {"fast": True}), device)
    flops = flops_per_image(recipe, same, device)
    peak = matmul_peak(device, torch.bfloat16 if fast.precision == "bf16" else torch.float32)
    return {
        "recipe": name,
        "batch_size": same.batch_size,
        "images_per_s": med,
        "repeats": runs,
        "spread": spreads,
        "flops_per_image": flops,
        "matmul_peak_flops": peak,
        "mfu_fast": flops * med["fast"] / peak,
        "settings": settings(name, args),
        "fit_over_plain": ratio["fit"],
        "fast_over_plain": ratio["fast"],
        "ratios": ratio,
        "fast_chose": chosen,
    }


def noise_notes(r: dict) -> list[str]:
    """A ratio whose gap from 1 is smaller than the spread of the columns it divides is not a measured difference."""
    notes = []
    for way, key in (("fit", "fit"), ("fast", "fast"), ("fit", "fit_over_plain_alloc")):
        base = "plain_alloc" if key == "fit_over_plain_alloc" else "plain"
        gap, noise = abs(r["ratios"][key] - 1), max(r["spread"][way], r["spread"][base])
        if noise > gap:
            notes.append(
                f"{r['recipe']}: {way}/{base} = {r['ratios'][key]:.3f}, but the repeats spread "
                f"{noise:.1%}: the difference is inside the noise"
            )
    return notes


def print_table(results: list[dict], machine: str, args) -> None:
    print(
        f"\n{machine}, torch {torch.__version__}, {args.steps} steps in windows of {args.window}, median of "
        f"{args.repeats} repeats, each in a fresh process (images/s, spread = (max - min) / median)"
    )
    ways = [w for w in WAYS if any(w in r["images_per_s"] for r in results)]
    print(
        f"{'recipe':8s} {'batch':>5s} "
        + " ".join(f"{WAYS[w]:>17s}" for w in ways)
        + f" {'b/a':>6s} {'b/a_':>6s} {'c/a':>6s}"
        + (f" {'L/a':>6s}" if "lightning" in ways else "")
        + f" {'GFLOP/img':>9s} {'MFU(c)':>6s}"
    )
    for r in results:
        cells = " ".join(f"{r['images_per_s'][w]:>8.0f} ±{r['spread'][w]:6.1%} " for w in ways)
        q = r["ratios"]
        print(
            f"{r['recipe']:8s} {r['batch_size']:5d} {cells}{q['fit']:6.3f} {q['fit_over_plain_alloc']:6.3f} "
            f"{q['fast']:6.3f}"
            + (f" {q['lightning']:6.3f}" if "lightning" in ways else "")
            + f" {r['flops_per_image'] / 1e9:9.2f} {r['mfu_fast']:6.1%}"
        )
    print("b/a_ = fit over the plain loop with the same allocator setting (a'): the engine's own cost")
    for r in results:
        print(f"{r['recipe']}: {r['fast_chose']}")
        for note in noise_notes(r):
            print("note: " + note)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--steps", type=int, default=0, help="steps per measurement (default: 300 on a GPU, 100 on the CPU)")
    p.add_argument("--window", type=int, default=0, help="steps per timing window (default: steps / 5)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=0, help="default: each recipe's")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[RECIPE:]FIELD=VALUE",
        help="override a config field of one recipe, or of every one (repeatable)",
    )
    p.add_argument("--one", choices=list(WAYS), help=argparse.SUPPRESS)  # a single measurement (a child process)
    p.add_argument("--out", default="bench/out/throughput.json")
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit(
            "set TOWERLAB_DATA to the shared data folder (../shared/data): mnist/, cifar10/, camvid/, kolektorsdd/"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.steps = args.steps or (300 if device.type == "cuda" else 100)
    args.window = args.window or max(1, args.steps // 5)
    if args.one:
        print(json.dumps(measure_one(args.one, args.recipes[0], args, device)))
        return 0
    results = [bench_recipe(n, args, device) for n in args.recipes]
    machine = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    report = {
        "command": " ".join(["python", *sys.argv]),
        "device": machine,
        "torch": torch.__version__,
        "steps": args.steps,
        "window": args.window,
        "repeats": args.repeats,
        "results": results,
        "notes": [n for r in results for n in noise_notes(r)],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print_table(results, machine, args)
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
