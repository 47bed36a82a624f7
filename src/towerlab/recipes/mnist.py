"""mnist: the classic multi-GPU MNIST ConvNet (3 conv blocks, fc 2400) with RMSProp, on the MNIST IDX files."""

from __future__ import annotations

import torch
from torch import nn

from towerlab.data import mnist as mnist_data
from towerlab.data import resolve_dir
from towerlab.data.augment import random_shift, to_float
from towerlab.data.loader import Data, tensor_data
from towerlab.recipes.classify import MAIN_METRIC, evaluate, evaluate_predictions, folder_splits, loss, predict  # noqa: F401
from towerlab.recipes.configs import MnistConfig

NAME = "mnist"
CLASSES = [str(i) for i in range(10)]
INPUT_SHAPE = (1, 28, 28)  # what prepare() takes: grayscale, white digit on black


Config = MnistConfig  # in recipes/configs.py, which imports no torch: a quick --help


def conv_block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    """conv 3x3 'same' -> ReLU -> max-pool 2 ('same': odd sizes round up, as TensorFlow pads) -> dropout."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True), nn.Dropout(dropout)
    )


class ConvNet(nn.Module):
    """conv 64 -> conv 64 -> conv 128, each pooled, then fc hidden -> dropout -> classes."""

    def __init__(
        self, in_shape: tuple[int, int, int], classes: int, hidden: int, dropout_conv: float, dropout_fc: float
    ):
        super().__init__()
        c, h, w = in_shape
        self.features = nn.Sequential(
            conv_block(c, 64, dropout_conv),
            conv_block(64, 64, dropout_conv),
            conv_block(64, 128, dropout_conv),
            nn.Flatten(),
        )
        for _ in range(3):  # each pool halves, rounding up
            h, w = (h + 1) // 2, (w + 1) // 2
        self.classifier = nn.Sequential(
            nn.Linear(128 * h * w, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout_fc), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def pipeline_layers(self) -> list[nn.Module]:
        """The forward in order, for --strategy pipeline (towerlab.pipeline cuts it into stages)."""
        return [*self.features, *self.classifier]


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    return ConvNet(input_shape(cfg), len(class_names(cfg)), cfg.hidden, cfg.dropout_conv, cfg.dropout_fc)


def transform(x: torch.Tensor, y: torch.Tensor):
    return to_float(x), y


def build_data(cfg: Config, dist) -> Data:
    found = folder_splits(cfg, input_shape(cfg))
    if found:
        train, test = found
    else:
        root = resolve_dir(cfg.data, "mnist")
        train, test = mnist_data.items(root, "train"), mnist_data.items(root, "test")

    def train_transform(x: torch.Tensor, y: torch.Tensor):
        return random_shift(to_float(x), cfg.shift), y

    return tensor_data(cfg, dist, train, test, train_transform, val_transform=transform)


def class_names(cfg: Config) -> list[str]:
    return cfg.class_list() or CLASSES


def prepare(cfg: Config, images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, *INPUT_SHAPE] -> model input: 0..1 floats."""
    return to_float(images)


def input_shape(cfg: Config) -> tuple[int, int, int]:
    size = cfg.size()
    return (INPUT_SHAPE[0], *size) if size else INPUT_SHAPE
