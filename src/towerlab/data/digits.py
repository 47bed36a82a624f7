"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 scans (UCI), installed with scikit-learn, no download."""

from __future__ import annotations

import torch

# A fixed split, independent of the training seed, so every run evaluates on the same 360 images.
_SPLIT_SEED = 0
_N_VAL = 360


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,1,8,8] scaled 0..16 -> 0..255, labels int64 [N]) for 'train' or 'test'."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    idx = order[:_N_VAL] if split == "test" else order[_N_VAL:]
    return images[idx].contiguous(), labels[idx].contiguous()
