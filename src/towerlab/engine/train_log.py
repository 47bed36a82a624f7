"""The training log: the loss and the recipe's terms summed on the device between two log lines (no host sync per
step), reduced across processes in one collective and written to metrics.jsonl, TensorBoard and the bar."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from towerlab.dist import Dist, all_reduce_sum
from towerlab.errors import DivergedError
from towerlab.runs import Run


class TrainLog:
    def __init__(self, dist: Dist, run: Run | None, molecules: bool, system=None):
        self.dist, self.run, self.system = dist, run, system
        # a recipe that reads SMILES counts molecules per second, not images
        self.rate_name = "mol_s" if molecules else "img_s"
        self.rate_key = "molecules_per_s" if molecules else "images_per_s"  # its name in the files
        self.sums: dict[str, torch.Tensor] = {"loss": torch.zeros((), device=dist.device)}
        self.steps = 0

    def add(self, logs: dict[str, torch.Tensor], parts: int = 1) -> None:
        """One micro-batch's logs (0-d device tensors), weighted 1/parts of its step."""
        for name, value in logs.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float() / parts

    def write(self, step: int, bar: tqdm, lr: float, rate: float, skipped: int) -> None:
        """The means since the last line, every rank's; `skipped`: files this rank's stream replaced so far."""
        names = list(self.sums)  # the same on every rank: the recipe returns the same keys everywhere
        extra = torch.tensor([float(skipped)], device=self.dist.device)
        sums = all_reduce_sum(torch.cat([torch.stack([self.sums[n] for n in names]), extra]), self.dist)
        *sums, skipped = sums.tolist()  # the one host sync
        means = {n: v / (self.steps * self.dist.world_size) for n, v in zip(names, sums)}
        self.sums, self.steps = {n: torch.zeros((), device=self.dist.device) for n in names}, 0
        loss = means["loss"]
        terms = {n: f"{v:.4g}" for n, v in means.items() if n != "loss"}  # the recipe's own terms (recon, kl, ...)
        bar.set_postfix(loss=f"{loss:.4f}", **terms, lr=f"{lr:.3g}", **{self.rate_name: f"{rate:,.0f}"})
        if self.run:
            self.run.log(
                step,
                {
                    **{f"train/{n}": v for n, v in means.items()},
                    "train/lr": lr,
                    f"train/{self.rate_key}": rate,
                    **({"data/skipped_files": int(skipped)} if skipped else {}),
                    **(self.system.read() if self.system else {}),
                },
            )
        if not math.isfinite(loss):
            raise DivergedError(
                f"training loss became {loss} at step {step}; lower --lr or set --clip-grad (the last checkpoint is "
                f"kept)"
            )

    def inputs(self, batch: tuple[torch.Tensor, ...], step: int) -> None:
        """The first batch's images in TensorBoard, each scaled to its own range."""
        x = batch[0]
        if self.run and x.ndim == 4 and x.shape[1] in (1, 3):
            x = x[:32].detach().float()
            lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
            self.run.tb.add_images("inputs", ((x - lo) / (hi - lo).clamp_min(1e-8)).cpu(), step)
