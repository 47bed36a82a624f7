"""Batch augmentations that run on the device, on a whole uint8 or float batch at once.

Randomness comes from the device's default generator, whose state the checkpoint saves, so a resumed
run draws the same crops and flips as an uninterrupted one.
"""

from __future__ import annotations

import torch


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] -> float [0,1]."""
    return x.float().div_(255.0)


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """An independent size x size crop of every image in [N,C,H,W]."""
    n, c, h, w = x.shape
    oy = torch.randint(0, h - size + 1, (n,), device=x.device)
    ox = torch.randint(0, w - size + 1, (n,), device=x.device)
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, None, :, None].expand(n, c, size, w)
    x = x.gather(2, rows)
    cols = (ox[:, None] + ar)[:, None, None, :].expand(n, c, size, size)
    return x.gather(3, cols)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_brightness(x: torch.Tensor, max_delta: float) -> torch.Tensor:
    """Add one uniform offset in [-max_delta, max_delta] per image (tf.image.random_brightness)."""
    delta = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2 - 1) * max_delta
    return x + delta


def random_contrast(x: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """Scale each channel's deviation from its mean by one factor per image (tf.image.random_contrast)."""
    factor = torch.rand(x.shape[0], 1, 1, 1, device=x.device) * (upper - lower) + lower
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per image; std floored at 1/sqrt(numel) (tf.image.per_image_standardization)."""
    numel = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, correction=0).clamp_min(numel ** -0.5)
    return (x - mean) / std
