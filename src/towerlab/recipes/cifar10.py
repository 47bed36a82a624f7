"""cifar10: the TensorFlow CIFAR-10 tutorial CNN (conv-pool-LRN x2, fc 384-192), trained as the tutorial does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from towerlab.data import cifar as cifar_data
from towerlab.data import resolve_dir
from towerlab.data.augment import (
    center_crop,
    per_image_standardization,
    random_brightness,
    random_contrast,
    random_crop,
    random_flip,
)
from towerlab.data.loader import Data, tensor_data
from towerlab.recipes.classify import MAIN_METRIC, evaluate, evaluate_predictions, folder_splits, loss, predict  # noqa: F401
from towerlab.recipes.configs import Cifar10Config

NAME = "cifar10"
INPUT_SHAPE = (3, 32, 32)  # what prepare() takes: RGB at the CIFAR size
CROP = 24  # the tutorial trains and evaluates on 24x24 crops of the 32x32 images


Config = Cifar10Config  # in recipes/configs.py, which imports no torch: a quick --help


class SamePool(nn.Module):
    """3x3/2 max-pool with TensorFlow 'SAME' padding: the missing row and column go at the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = _same_pad(x.shape[-2]), _same_pad(x.shape[-1])
        x = F.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
        return F.max_pool2d(x, 3, 2)


def _same_pad(size: int, k: int = 3, s: int = 2) -> int:
    out = -(-size // s)
    return max((out - 1) * s + k - size, 0)


def _lrn() -> nn.LocalResponseNorm:
    # tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75). PyTorch divides alpha by the window size (9).
    return nn.LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1.0)


class TutorialCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 5, padding=2)
        self.pool1, self.norm1 = SamePool(), _lrn()
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.norm2, self.pool2 = _lrn(), SamePool()
        self.local3 = nn.Linear(64 * 6 * 6, 384)
        self.local4 = nn.Linear(384, 192)
        self.softmax_linear = nn.Linear(192, classes)
        # the tutorial's initialisation: truncated normals (cut at 2 std) and these biases
        for layer, std, bias in (
            (self.conv1, 5e-2, 0.0),
            (self.conv2, 5e-2, 0.1),
            (self.local3, 0.04, 0.1),
            (self.local4, 0.04, 0.1),
            (self.softmax_linear, 1 / 192.0, 0.0),
        ):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.constant_(layer.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.pool1(F.relu(self.conv1(x))))
        x = self.pool2(self.norm2(F.relu(self.conv2(x))))
        x = F.relu(self.local3(x.flatten(1)))
        x = F.relu(self.local4(x))
        return self.softmax_linear(x)


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    return TutorialCNN(len(class_names(cfg)))


def decay_params(model: nn.Module) -> list[str]:
    """Weight decay on local3 and local4 weights only, as the tutorial's _variable_with_weight_decay calls."""
    return ["local3.weight", "local4.weight"]


def train_transform(cfg: Config):
    def transform(x: torch.Tensor, y: torch.Tensor):
        x = random_flip(random_crop(x, CROP)).float()  # crop and flip on uint8, then 0..255 floats
        x = random_contrast(random_brightness(x, cfg.max_brightness), cfg.contrast_lower, cfg.contrast_upper)
        return per_image_standardization(x), y

    return transform


def eval_transform(x: torch.Tensor, y: torch.Tensor):
    return per_image_standardization(center_crop(x, CROP).float()), y


def build_data(cfg: Config, dist) -> Data:
    found = folder_splits(cfg, INPUT_SHAPE)  # an image folder: resized to the tutorial's 32x32, then cropped
    if found:
        train, test = found
    else:
        root = resolve_dir(cfg.data, "cifar10")
        train, test = cifar_data.items(root, "train"), cifar_data.items(root, "test")
    return tensor_data(cfg, dist, train, test, train_transform(cfg), eval_transform)


def class_names(cfg: Config) -> list[str]:
    return cfg.class_list() or list(cifar_data.CLASSES)


def prepare(cfg: Config, images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, 3, 32, 32] -> model input: the evaluation centre crop, standardized."""
    return eval_transform(images, None)[0]


def input_shape(cfg: Config) -> tuple[int, int, int]:
    return INPUT_SHAPE
