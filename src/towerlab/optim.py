"""Optimizers, learning-rate schedules and the weight EMA, built from a TrainConfig."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def param_groups(model: nn.Module, decay_names: set[str], weight_decay: float) -> list[dict]:
    """Weight decay only on the parameters the recipe names."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if name in decay_names else rest).append(p)
    groups = [{"params": rest, "weight_decay": 0.0}]
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


# Each optimizer's usual learning rate (Keras 2's defaults, which the "evolve a neural network" search relied on when
# it made the optimizer a gene): what lr=0 means, so a search over optimizers does not cripple the ones that need
# a larger step (plain SGD at Adam's 1e-3 barely moves in 30 epochs: measured, 0.23 accuracy on MNIST).
USUAL_LR = {
    "sgd": 0.01,
    "rmsprop": 1e-3,
    "adagrad": 0.01,
    "adadelta": 1.0,
    "adam": 1e-3,
    "adamw": 1e-3,
    "adamax": 2e-3,
    "nadam": 2e-3,
}


def build_optimizer(groups: list[dict], cfg) -> torch.optim.Optimizer:
    o, lr, betas = cfg.optimizer, cfg.lr or USUAL_LR[cfg.optimizer], (cfg.beta1, cfg.beta2)
    if o == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if o == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=cfg.rms_decay, eps=cfg.eps, momentum=cfg.momentum)
    if o == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=cfg.eps)
    if o == "adadelta":
        return torch.optim.Adadelta(groups, lr=lr, eps=cfg.eps)
    classes = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adamax": torch.optim.Adamax,
        "nadam": torch.optim.NAdam,
    }
    return classes[o](groups, lr=lr, betas=betas, eps=cfg.eps)


def lr_factor(cfg, steps_per_epoch: int, total_steps: int):
    """step -> multiplier of cfg.lr. A pure function of the step, so resuming needs only the step."""
    period = max(1, round(cfg.decay_epochs * steps_per_epoch))

    def base(step: int) -> float:
        if cfg.schedule == "step":
            return cfg.decay_rate ** (step // period)
        if cfg.schedule == "exp":  # tf.train.exponential_decay
            return cfg.decay_rate ** ((step // period) if cfg.staircase else step / period)
        if cfg.schedule in ("cosine", "onecycle"):
            t = min(step, total_steps) / max(1, total_steps)
            if cfg.schedule == "onecycle":  # linear up for 30% of the run, cosine down for the rest
                if t < 0.3:
                    return 0.04 + 0.96 * t / 0.3
                t = (t - 0.3) / 0.7
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        return warm * base(step)

    return factor


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """A moving average of weights and buffers, as tf.train.ExponentialMovingAverage(decay, num_updates):
    the decay is min(decay, (1 + n) / (10 + n)), so early averages are not stuck near the initial weights."""

    @torch.no_grad()
    def update(avg: list[torch.Tensor], cur: list[torch.Tensor], n: torch.Tensor) -> None:
        d = torch.clamp((1 + n) / (10 + n), max=decay).to(avg[0].dtype)
        for a, c in zip(avg, cur):
            if a.is_floating_point():
                a.mul_(d).add_(c * (1 - d))
            else:
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
