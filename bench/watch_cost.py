"""The cost of watching a network train (tb_histograms), measured by fit itself in one run.

    TOWERLAB_DATA=../shared/data python bench/watch_cost.py [--recipe mnist --steps 120 --every 40 --repeats 3]

Three ways, the same steps, repeated in rotating order: (a) the field off; (b) the field on but with no logging
step inside the run (what every step between two logging steps costs: it should be nothing); (c) the field on every
--every steps. images/s is fit's own training throughput (evaluation excluded); the table gives the median and the
spread (max - min) of each column and says when a gap is inside the spread. Writes bench/out/watch_cost.json and,
from run (c), bench/out/watch.png: what the logged statistics look like (the README shows it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from towerlab import config
from towerlab.engine import fit
from towerlab.recipes import get


def one(recipe, args, every: int, out: Path) -> float:
    fields = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "log_every": args.steps,
        "eval_every_epochs": 0.0,
        "eval_limit": 64,
        "tb_histograms": every,
    }
    return fit(recipe, config.build(recipe.Config, None, fields), out=out)["images_per_s"]


def picture(run: Path, path: Path) -> None:
    """Zero fraction of each layer that zeroes outputs (ReLU, dropout), update-to-weight ratio of each weight, and
    the global gradient norm, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    ev.Reload()
    tags = ev.Tags()["scalars"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        ("activation_zero_fraction/", "zero fraction of each layer's outputs", False),
        ("update_ratio/", "|update| / |weight| per step", True),
        ("gradient_norm/global", "global gradient norm", True),
    )
    for ax, (prefix, title, log) in zip(axes, panels):
        for tag in [t for t in tags if t.startswith(prefix) and (prefix.endswith("/") or t == prefix)]:
            if prefix == "update_ratio/" and not tag.endswith("weight"):
                continue
            points = ev.Scalars(tag)
            if prefix == "activation_zero_fraction/" and max(p.value for p in points) < 0.01:
                continue  # layers that zero nothing (convolutions, pooling): one flat line at 0 each
            ax.plot([p.step for p in points], [p.value for p in points], label=tag.split("/", 1)[1] or tag)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if prefix != "gradient_norm/global":
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="mnist")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--every", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/out/watch_cost.json")
    args = p.parse_args()
    recipe = get(args.recipe)
    ways = {"(a) off": 0, "(b) on, no logging step": args.steps + 1, f"(c) every {args.every}": args.every}
    rates = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(ways)[r % 3 :] + list(ways)[: r % 3]  # rotating order: drift hits every column alike
            for w in order:
                rates[w].append(one(recipe, args, ways[w], Path(tmp) / f"{r}-{ways[w]}"))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        picture(Path(tmp) / f"{args.repeats - 1}-{args.every}", Path(args.out).with_name("watch.png"))
    base = statistics.median(rates["(a) off"])
    spread = {w: max(v) - min(v) for w, v in rates.items()}
    print(f"{args.recipe}, {args.steps} steps, batch {args.batch_size}, {torch.get_num_threads()} threads; images/s")
    print(f"{'way':28s} {'median':>8s} {'spread':>8s} {'vs off':>7s}")
    for w, v in rates.items():
        m = statistics.median(v)
        note = "  (gap inside the spread: noise)" if abs(m - base) <= max(spread[w], spread["(a) off"]) else ""
        print(f"{w:28s} {m:8.0f} {spread[w]:8.0f} {m / base:7.3f}{note}")
    Path(args.out).write_text(
        json.dumps(
            {
                "recipe": args.recipe,
                "steps": args.steps,
                "rates": rates,
                "machine": platform.machine(),
                "torch": torch.__version__,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
