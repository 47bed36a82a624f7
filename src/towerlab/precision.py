"""Arithmetic precision and the optimizer step, in one place: the autocast context, the loss scaling fp16 needs
(bf16 and fp32 need none), and the step with unscale + gradient clipping. The Trainer and hill-climb's fine-tuning
both step through it, so a precision or clipping rule changes for every training loop at once."""

from __future__ import annotations

from contextlib import nullcontext

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, precision: str, device: torch.device):
        self.dtype, self.device_type = DTYPES.get(precision), device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, opt: torch.optim.Optimizer, params, clip: float = 0.0) -> None:
        """One optimizer step on the gradients backward() left: unscaled before clipping (the norm is of the true
        gradients), skipped by the scaler when fp16 overflowed."""
        if clip:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scaler.load_state_dict(state)
