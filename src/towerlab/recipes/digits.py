"""digits: the MNIST ConvNet on scikit-learn's bundled 8x8 handwritten digits (real data, no download)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from towerlab.config import TrainConfig, opt
from towerlab.data import digits as digits_data
from towerlab.data.augment import to_float
from towerlab.data.loader import TensorLoader
from towerlab.recipes.classify import MAIN_METRIC, evaluate, loss, predict  # noqa: F401
from towerlab.recipes.mnist import ConvNet

NAME = "digits"
CLASSES = [str(i) for i in range(10)]
INPUT_SHAPE = (1, 8, 8)  # what prepare() takes: grayscale, white digit on black


@dataclass
class Config(TrainConfig):
    # The mnist recipe's optimizer; 30 epochs of the 1,437 training scans take seconds on a CPU.
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    rms_decay: float = 0.9
    epochs: float = 30.0
    batch_size: int = 64
    log_every: int = 20
    dropout_conv: float = opt(0.25, "dropout after each conv block")
    dropout_fc: float = opt(0.5, "dropout after the fully connected layer")
    hidden: int = opt(2400, "units of the fully connected layer")


def build_model(cfg: Config) -> nn.Module:
    return ConvNet((1, 8, 8), 10, cfg.hidden, cfg.dropout_conv, cfg.dropout_fc)


def transform(x: torch.Tensor, y: torch.Tensor):
    return to_float(x), y


def build_data(cfg: Config, dist):
    # cfg.data is unused: the data ships inside scikit-learn.
    train, test = digits_data.load_split("train"), digits_data.load_split("test")
    return (TensorLoader(train, cfg.batch_size, dist, train=True, seed=cfg.seed, on_device=cfg.data_on_device, transform=transform),
            TensorLoader(test, cfg.batch_size, dist, train=False, on_device=cfg.data_on_device, transform=transform))


def class_names(cfg: Config) -> list[str]:
    return CLASSES


def prepare(cfg: Config, images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, *INPUT_SHAPE] -> model input."""
    return to_float(images)
