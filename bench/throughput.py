"""Training throughput: a plain PyTorch loop vs towerlab's fit, in one run, as ratios.

    python bench/throughput.py                      # every image recipe, on the GPU if visible, else the CPU
    python bench/throughput.py --recipes cifar10 --steps 300 --window 50 --repeats 3
    python bench/throughput.py --recipes fcn8s segdec        # the segmentation issues' settings (GPU-sized)
    python bench/throughput.py --recipes chemvae             # molecules/s (the columns say images/s: items)

For each recipe, three ways, the same model and batch size:
  (a) plain:  a hand-written loop: DataLoader over host tensors, eager fp32, the recipe's batch augmentation
  (b) fit:    towerlab's fit with identical settings (host data, fp32, no compile, no EMA, constant lr)
  (c) fast:   fit with its fast path (data in device memory, bf16 on a GPU, channels_last, torch.compile)
  (L) when the lightning package is installed: the same model, loop and DataLoader under a Lightning Trainer
Each is timed over windows of --window steps, ending each window with a host sync (loss.item());
the first window (warm-up, compilation) is dropped and the median window rate kept; the three are
interleaved --repeats times in rotating order; the table shows the median rate of each way and the median of
the per-repeat ratios. Real data from $TOWERLAB_DATA.
Writes bench/out/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from towerlab import config
from towerlab.data.loader import pad_stack
from towerlab.dist import Dist
from towerlab.engine import fit
from towerlab.recipes import get
from towerlab.recipes.contract import Step

STEP = Step(10**6, 10**6, 1.0)  # past any warm-up: the steady-state loss


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
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
                        pin_memory=device.type == "cuda")
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
    trainer = L.Trainer(max_steps=steps, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[windows], num_sanity_val_steps=0)
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
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def fit_rates(recipe, cfg, steps: int, window: int) -> list[float]:
    """fit's own per-window throughput, read back from the run's metrics.jsonl."""
    with tempfile.TemporaryDirectory() as tmp:
        run = config.build(type(cfg), None, {**vars(cfg), "max_steps": steps, "log_every": window,
                                              "eval_every_epochs": 0.0})
        fit(recipe, run, out=Path(tmp) / "run")
        rows = [json.loads(line) for line in open(Path(tmp) / "run" / "metrics.jsonl")]
    return [r["train/images_per_s"] for r in rows if "train/images_per_s" in r]


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


# The issues' benchmark settings: FCN-8s on 512x512 crops (CamVid zoomed 2x), SegDecNet at KolektorSDD's 1408x512.
SETTINGS = {"fcn8s": {"crop_height": 512, "crop_width": 512, "scale_min": 2.0, "scale_max": 2.0, "batch_size": 8},
            "segdec": {"stage": "joint", "height": 1408, "width": 512, "batch_size": 8}}


def bench_recipe(name: str, args, device: torch.device) -> dict:
    recipe = get(name)
    base = {"seed": 0, "ema_decay": 0.0, "schedule": "constant", "weight_decay": 0.0, "precision": "fp32",
            "compile": False, "channels_last": False, "data_on_device": False, **SETTINGS.get(name, {})}
    if args.batch_size:
        base["batch_size"] = args.batch_size
    for item in args.set:  # e.g. --set fcn8s:width=0.125 for a quick CPU check of a big model
        key, value = item.split("=", 1)
        target, _, key = key.rpartition(":")
        if target in ("", name):
            base[key] = yaml.safe_load(value)
    same = config.build(recipe.Config, None, base)
    fast = config.build(recipe.Config, None, {**base, "data_on_device": True, "channels_last": True, "compile": True,
                                              "precision": "bf16" if device.type == "cuda" else args.cpu_fast_precision,
                                              "compile_mode": "max-autotune-no-cudagraphs" if device.type == "cuda" else "default"})
    measure = {"plain": lambda: plain_loop(recipe, same, device, args.steps, args.window),
               "fit": lambda: fit_rates(recipe, same, args.steps, args.window),
               "fast": lambda: fit_rates(recipe, fast, args.steps, args.window)}
    try:
        import lightning  # noqa: F401  an extra column when the machine has it
        measure["lightning"] = lambda: lightning_rates(recipe, same, device, args.steps, args.window)
    except ImportError:
        pass
    runs = {k: [] for k in measure}
    order = list(measure)
    for _ in range(args.repeats):  # rotate the order: no way gets the warm (or the throttled) slot every time
        for k in order:
            runs[k].append(steady(measure[k]()))
        order = order[1:] + order[:1]
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(runs[k], runs["plain"])) for k in runs if k != "plain"}
    flops = flops_per_image(recipe, same, device)
    peak = matmul_peak(device, torch.bfloat16 if fast.precision == "bf16" else torch.float32)
    return {"recipe": name, "batch_size": same.batch_size, "images_per_s": med, "repeats": runs,
            "flops_per_image": flops, "matmul_peak_flops": peak, "mfu_fast": flops * med["fast"] / peak,
            "settings": {k: v for k, v in base.items()},
            "fit_over_plain": ratio["fit"], "fast_over_plain": ratio["fast"], "ratios": ratio,
            "fast_settings": {"precision": fast.precision, "channels_last": True, "compile": True,
                              "compile_mode": fast.compile_mode, "data_on_device": True}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--steps", type=int, default=0, help="steps per measurement (default: 300 on a GPU, 50 on the CPU)")
    p.add_argument("--window", type=int, default=0, help="steps per timing window (default: steps / 5)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=0, help="default: each recipe's")
    p.add_argument("--cpu-fast-precision", default="fp32", choices=("fp32", "bf16"),
                   help="precision of the fast path on the CPU (bf16 helps only on CPUs with AMX/AVX512-BF16)")
    p.add_argument("--set", action="append", default=[], metavar="[RECIPE:]FIELD=VALUE",
                   help="override a config field of one recipe, or of every one (repeatable)")
    p.add_argument("--out", default="bench/out/throughput.json")
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data): mnist/, cifar10/, camvid/, kolektorsdd/")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.steps = args.steps or (300 if device.type == "cuda" else 50)
    args.window = args.window or max(1, args.steps // 5)
    results = [bench_recipe(n, args, device) for n in args.recipes]
    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    report = {"command": " ".join(["python", *sys.argv]), "device": machine, "torch": torch.__version__,
              "steps": args.steps, "window": args.window, "repeats": args.repeats, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\n{machine}, torch {torch.__version__}, {args.steps} steps, median of {args.repeats} repeats (images/s)")
    light = any("lightning" in r["images_per_s"] for r in results)
    print(f"{'recipe':10s} {'batch':>5s} {'(a) plain':>10s} {'(b) fit':>10s} {'(c) fast':>10s} {'b/a':>6s} {'c/a':>6s}"
          + f" {'GFLOP/img':>9s} {'MFU(c)':>6s}" + (f" {'Lightning':>10s} {'L/a':>6s}" if light else ""))
    for r in results:
        ips = r["images_per_s"]
        line = (f"{r['recipe']:10s} {r['batch_size']:5d} {ips['plain']:10.0f} {ips['fit']:10.0f} {ips['fast']:10.0f} "
                f"{r['fit_over_plain']:6.3f} {r['fast_over_plain']:6.2f} {r['flops_per_image'] / 1e9:9.1f} "
                f"{r['mfu_fast']:6.1%}")
        if light:
            line += f" {ips['lightning']:10.0f} {r['ratios']['lightning']:6.3f}"
        print(line)
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
