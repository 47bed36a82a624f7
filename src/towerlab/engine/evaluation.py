"""Validation at each evaluation: the recipe's metrics, the best evaluation so far (with the held-out test split
scored for its weights and its predictions kept for the report), the console line and the run's log."""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm import tqdm

from towerlab.dist import Dist, all_gather_rows
from towerlab.engine.loop import Progress
from towerlab.precision import Precision
from towerlab.runs import Run
from towerlab.runs.best import Metric


class Evaluator:
    def __init__(self, recipe, can: frozenset, data, val_loader, limited: bool, dist: Dist, run: Run | None, clock):
        """val_loader: the validation split, or its first --eval-limit items (limited=True)."""
        self.recipe, self.can, self.data, self.loader, self.limited = recipe, can, data, val_loader, limited
        self.dist, self.run, self.clock = dist, run, clock
        self.main = Metric.of(recipe)
        self.best: dict = {}  # metric, value, step (and test: the test split's metrics for those weights)
        self.last: dict[str, float] = {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, step: int, epoch: float, precision: Precision) -> dict[str, float]:
        model.eval()
        with self.clock.timing("eval_seconds"), precision.autocast():
            if "predictions" in self.can:
                metrics, probs, labels = self.recipe.evaluate_predictions(model, self._bar(), self.dist)
            else:
                metrics = self.recipe.evaluate(model, self._bar(), self.dist)
        if self.limited:  # say so wherever these numbers go: they are not the whole validation split
            metrics = {**metrics, "eval_items": int(self.loader.num_items)}
        value = metrics[self.main.name]
        better = self.main.better(value, self.best.get("value")) and math.isfinite(value)
        if better:
            self.best = {"metric": self.main.name, "value": value, "step": step}
            if self.data.test is not None:  # the held-out test split, scored only for the weights validation chose
                self.best["test"] = self._test(model, metrics, precision)
            if "predictions" in self.can:
                self._keep_predictions(probs, labels, step)
        self.last = metrics
        self._report(model, metrics, step, epoch, better)
        return metrics

    def _bar(self) -> Progress:
        return Progress(self.loader, "evaluate", self.dist)

    def _report(self, model: nn.Module, metrics: dict[str, float], step: int, epoch: float, better: bool) -> None:
        if self.dist.is_main:  # on the console too, as each evaluation happens (not only in the files)
            shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" not in k and k != "eval_items")
            tqdm.write(f"step {step}: validation {shown}" + ("  (best so far)" if better else ""))
        if not self.run:
            return
        # with the time it took to get here (time to accuracy), evaluation not counted in train_s
        times = {"wall_s": round(self.clock.wall(), 3), "train_s": round(self.clock.training(), 3)}
        self.run.log(step, {"epoch": epoch, **times, **{f"val/{k}": v for k, v in metrics.items()}})
        if "examples" in self.can:  # a recipe that draws its outputs (segmentation overlays)
            self.run.tb.add_images("val/examples", self.recipe.examples(model, self.loader), step)

    def _keep_predictions(self, probs: torch.Tensor, labels: torch.Tensor, step: int) -> None:
        """Every process's predictions put back in item order on rank 0 and written beside the run's metrics (the
        report reads them instead of evaluating the split again). A collective: every rank takes part."""
        where = all_gather_rows(self.loader.local_items(), self.dist)
        probs, labels = all_gather_rows(probs, self.dist), all_gather_rows(labels, self.dist)
        if self.run:
            order = where.argsort()
            self.run.write_predictions(step, probs[order], labels[order])

    def _test(self, model: nn.Module, validation: dict[str, float], precision: Precision) -> dict[str, float]:
        loader = Progress(self.data.test, "test", self.dist)
        with self.clock.timing("eval_seconds"), precision.autocast():
            if "operating_point" in self.can:  # judged at the threshold validation chose, as it would be deployed
                metrics = self.recipe.evaluate_at(model, loader, self.dist, validation)
            else:
                metrics = self.recipe.evaluate(model, loader, self.dist)
        return {k: v for k, v in metrics.items() if "/" not in k}
