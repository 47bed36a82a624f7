"""`--strategy pipeline`: one model cut into consecutive stages, each on its own device of this machine, for a model
whose weights and activations do not fit one GPU (GPipe, Huang et al. 2019, by device placement in one process).

Each batch is split into `pipeline_chunks` micro-batches that flow through the stages in order. CUDA kernels are
queued asynchronously per device, so while stage 2 works on micro-batch 1, stage 1 already computes micro-batch 2;
backward overlaps the same way (autograd runs one thread per device). The loss and the gradients are those of the
whole batch: the same training as one device, except that batch-norm statistics are per micro-batch.

A model says how it is cut by listing its layers in forward order: an nn.Sequential is its children; other models
define `pipeline_layers()` (ConvNet of the mnist and digits recipes). Stages are balanced by parameter count.
The state dict keeps the model's own keys, so checkpoints load under any strategy and on one device.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from towerlab.errors import ConfigError


@runtime_checkable
class Layered(Protocol):
    """A model whose forward is its layers applied in order (the pipeline cuts between them)."""

    def pipeline_layers(self) -> list[nn.Module]: ...


def layers_of(model: nn.Module) -> list[nn.Module]:
    """The model's forward as an ordered list of modules (each takes the previous one's output)."""
    if isinstance(model, Layered):
        return list(model.pipeline_layers())
    if isinstance(model, nn.Sequential):
        return list(model)
    raise ConfigError(
        f"{type(model).__name__} does not list its layers for a pipeline (an nn.Sequential, or a "
        f"pipeline_layers() method); use --strategy fsdp to spread it over the devices"
    )


def balance(sizes: list[int], stages: int) -> list[int]:
    """Cut points splitting consecutive layers of `sizes` into `stages` non-empty groups of near-equal sum."""
    if stages > len(sizes):
        raise ConfigError(
            f"{stages} pipeline stages but the model has only {len(sizes)} layers; name fewer --pipeline-devices"
        )
    total, cuts, acc = max(sum(sizes), 1), [], 0
    for i, size in enumerate(sizes):
        acc += size
        remaining_layers, remaining_cuts = len(sizes) - i - 1, stages - 1 - len(cuts)
        if remaining_cuts and (acc >= total * (len(cuts) + 1) / stages or remaining_layers == remaining_cuts):
            cuts.append(i + 1)
    return cuts


def devices_from(spec: str) -> list[torch.device]:
    """'cuda:0,cuda:1' -> devices; empty: every visible GPU, or two CPU stages without one."""
    if not spec:
        n = torch.cuda.device_count()
        return [torch.device("cuda", i) for i in range(n)] if n else [torch.device("cpu")] * 2
    try:
        devices = [torch.device(d.strip()) for d in spec.split(",") if d.strip()]
    except RuntimeError as e:
        raise ConfigError(f"pipeline_devices={spec!r}: {e}; write e.g. cuda:0,cuda:1") from None
    for d in devices:
        if d.type == "cuda" and (d.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"pipeline_devices names {d} but torch sees {torch.cuda.device_count()} GPU(s)")
    return devices


class Pipeline(nn.Module):
    """Calls the model stage by stage over micro-batches; the output comes back on the input's device."""

    def __init__(self, model: nn.Module, devices: list[torch.device], chunks: int):
        super().__init__()
        self.module, self.devices, self.chunks = model, devices, chunks
        layers = layers_of(model)
        covered = {id(p) for layer in layers for p in layer.parameters()}
        stray = [n for n, p in model.named_parameters() if id(p) not in covered]
        if stray:
            raise ConfigError(f"{type(model).__name__}.pipeline_layers() leaves out {stray[0]}")
        bounds = [0, *balance([sum(p.numel() for p in m.parameters()) for m in layers], len(devices)), len(layers)]
        # a plain list, not child modules: the model's state dict keys stay as they are
        self.stages = [nn.Sequential(*layers[a:b]).to(d) for a, b, d in zip(bounds, bounds[1:], devices)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for chunk in x.chunk(self.chunks):  # micro-batch i+1 enters stage 1 while micro-batch i is in stage 2
            for stage, device in zip(self.stages, self.devices):
                chunk = stage(chunk.to(device, non_blocking=True))
            outs.append(chunk)
        return torch.cat(outs).to(x.device)

    def describe(self) -> str:
        sizes = [sum(p.numel() for p in s.parameters()) for s in self.stages]
        return ", ".join(
            f"{d}: {len(s)} layers {n / 1e6:.2f}M params" for s, d, n in zip(self.stages, self.devices, sizes)
        )
