"""Watching a network train, as the TensorFlow CIFAR-10 tutorial teaches: every `tb_histograms` steps, per layer,
the histogram of its outputs and the fraction of them that are zero (a dead ReLU layer reads 1.0), the histogram and
norm of each parameter's gradient and weights, the update-to-weight ratio |w_after - w_before| / |w_before| (that is
|lr * update| / |w|: around 1e-3 is healthy, far above means the learning rate is too high, far below too low), and
the global gradient norm.

Off the logging steps nothing runs: no hooks are registered, nothing is copied, no host sync. On a logging step:
forward hooks on every leaf module for that one step, a copy of the weights before the optimizer step, then the
gradients (already averaged across processes by DDP, so rank 0's are every replica's) and the weights after it.
Activations are rank 0's own slice of the batch. Under FSDP every process takes part in gathering the full tensors
of the parameters and their gradients (a collective), on the logging steps only; rank 0 writes.
"""

from __future__ import annotations

import torch
from torch import nn


def _full(t: torch.Tensor) -> torch.Tensor:
    """A parameter or gradient as one whole tensor (FSDP's DTensor shards gathered: a collective)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


class Watcher:
    def __init__(self, raw: nn.Module, every: int, writer=None, sharded: bool = False):
        """writer: rank 0's SummaryWriter (None elsewhere: those ranks only take part in the gathers when sharded)."""
        self.raw, self.every, self.writer, self.sharded = raw, every, writer, sharded
        self.params = [(n, p) for n, p in raw.named_parameters() if p.requires_grad]
        self._hooks: list = []
        self._acts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._before: dict[str, torch.Tensor] = {}

    def due(self, step: int) -> bool:
        """Whether the optimizer step that ends at step + 1 is a logging step."""
        return self.every > 0 and (step + 1) % self.every == 0

    def begin(self) -> None:
        """Before the step: hooks on every leaf module, a copy of the weights."""
        if self.writer is not None:
            for name, module in self.raw.named_modules():
                if name and not list(module.children()):
                    self._hooks.append(module.register_forward_hook(self._hook(name)))
        if self.writer is not None or self.sharded:
            self._before = {n: _full(p.detach()).float().clone() for n, p in self.params}

    def _hook(self, name: str):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point() and name not in self._acts:
                out = output.detach().float()
                self._acts[name] = (out.flatten()[:1_000_000].cpu(), (out == 0).float().mean().cpu())

        return record

    def end(self, step: int) -> None:
        """After the optimizer step: write everything for `step`, and let go of the hooks."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self.writer is None and not self.sharded:
            return
        stats = [
            (n, _full(p.detach()).float(), None if p.grad is None else _full(p.grad.detach()).float())
            for n, p in self.params
        ]  # a collective under FSDP: every process gathers
        if self.writer is not None:
            self._write(step, stats)
        self._acts, self._before = {}, {}

    def _write(self, step: int, stats: list) -> None:
        tb, total = self.writer, torch.zeros((), dtype=torch.float64)
        for name, (values, zero) in self._acts.items():
            tb.add_histogram(f"activations/{name}", values, step)
            tb.add_scalar(f"activation_zero_fraction/{name}", float(zero), step)
        for name, weight, grad in stats:
            w = weight.cpu()
            tb.add_histogram(f"weights/{name}", w, step)
            tb.add_scalar(f"weight_norm/{name}", float(w.norm()), step)
            if name in self._before:
                before = self._before[name].cpu()
                tb.add_scalar(f"update_ratio/{name}", float((w - before).norm() / before.norm().clamp_min(1e-12)), step)
            if grad is not None:
                g = grad.cpu()
                tb.add_histogram(f"gradients/{name}", g, step)
                tb.add_scalar(f"gradient_norm/{name}", float(g.norm()), step)
                total += g.double().pow(2).sum()
        tb.add_scalar("gradient_norm/global", float(total.sqrt()), step)
