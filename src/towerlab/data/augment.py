"""Batch augmentations that run on the device, on a whole uint8 or float batch at once.

Randomness comes from the device's default generator, whose state the checkpoint saves, so a resumed
run draws the same crops and flips as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] -> float [0,1]."""
    return x.float().div_(255.0)


def random_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """An independent crop of size (h, w) (or size x size) of every image in [N,C,H,W]."""
    n, c, h, w = x.shape
    sh, sw = (size, size) if isinstance(size, int) else size
    oy = torch.randint(0, h - sh + 1, (n,), device=x.device)
    ox = torch.randint(0, w - sw + 1, (n,), device=x.device)
    rows = (oy[:, None] + torch.arange(sh, device=x.device))[:, None, :, None].expand(n, c, sh, w)
    x = x.gather(2, rows)
    cols = (ox[:, None] + torch.arange(sw, device=x.device))[:, None, None, :].expand(n, c, sh, sw)
    return x.gather(3, cols)


def random_shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate each image in [N,C,H,W] by an independent whole-pixel offset in [-pixels, pixels] on each axis,
    filling with zeros (the background of a digit scan): zero-pad, then a random crop of the original size."""
    if pixels <= 0:
        return x
    return random_crop(F.pad(x, (pixels,) * 4), tuple(x.shape[-2:]))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


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
    numel = x.shape[1:].numel()  # (not x[0]: an evaluation batch can be empty on some process)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, correction=0).clamp_min(numel**-0.5)
    return (x - mean) / std


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [N,C,H,W] -> float, (x/255 - mean) / std per channel (torchvision's ImageNet convention)."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (to_float(x) - m) / s


def paired_scale_crop_flip(
    x: torch.Tensor,
    y: torch.Tensor,
    size: tuple[int, int],
    scale: tuple[float, float],
    flip: bool,
    ignore: int,
    draws: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random scale, crop and mirror per image, applied identically to the image and its label map.

    x: float [N,C,H,W]; y: integer [N,H,W]. Each output is a size=(h, w) window of the image zoomed by a factor
    drawn uniformly from `scale`; a window reaching past the image is filled with 0 in x and `ignore` in y.
    The image is resampled bilinearly, the labels by nearest neighbour, so no label value is ever invented.
    One affine_grid + grid_sample per batch, on the device. draws: [N, 4] uniform numbers to use (scale, x, y,
    mirror) instead of drawing from the device's generator.
    """
    n, _, hi, wi = x.shape
    ho, wo = size
    lo, hi_s = scale
    u = iter(draws.to(x.device).unbind(1)) if draws is not None else None

    def uniform() -> torch.Tensor:
        return next(u) if u is not None else torch.rand(n, device=x.device)

    s = uniform() * (hi_s - lo) + lo
    theta = torch.zeros(n, 2, 3, device=x.device)
    for row, (out_len, in_len) in enumerate(((wo, wi), (ho, hi))):
        span = out_len / s  # input pixels the window covers
        start = uniform() * (in_len - span)  # uniform in [0, in-span] (or [in-span, 0])
        # output normalized coord u -> input pixel start + ((u+1) out/2 - 1/2)/s -> normalized input coord
        theta[:, row, row] = out_len / (s * in_len)
        theta[:, row, 2] = 2 * (start + (out_len / 2 - 0.5) / s + 0.5) / in_len - 1
    if flip:
        mirror = uniform() < 0.5
        theta[:, 0, 0] = torch.where(mirror, -theta[:, 0, 0], theta[:, 0, 0])
    grid = F.affine_grid(theta, [n, 1, ho, wo], align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    # labels + 1 so that the zero padding reads as -1, i.e. outside the image
    y1 = F.grid_sample((y.unsqueeze(1).float() + 1), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    y = y1.squeeze(1).long() - 1
    return x, torch.where(y < 0, torch.full_like(y, ignore), y)


def item_scale_crop_flip(size: tuple[int, int], scale: tuple[float, float], flip: bool, ignore: int):
    """paired_scale_crop_flip for one (uint8 image [C,H,W], label map [H,W]) at its own size, with the numbers it
    is given: what a loader's worker does to each item before the batch is made (a batch of crops, never padded
    to its largest image, the mmsegmentation way). The image comes back uint8 (rounded), as it came."""

    def transform(item: tuple[torch.Tensor, torch.Tensor], draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = item
        x, y = paired_scale_crop_flip(
            image.unsqueeze(0).float(), label.unsqueeze(0).long(), size, scale, flip, ignore, draws.unsqueeze(0)
        )
        return x[0].round_().clamp_(0, 255).to(torch.uint8), y[0].to(label.dtype)

    return transform
