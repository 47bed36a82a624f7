"""digits: the MNIST ConvNet on scikit-learn's bundled 8x8 handwritten digits (real data, no download)."""

from __future__ import annotations

from torch import nn

from towerlab.data import digits as digits_data
from towerlab.data.loader import Data, tensor_data
from towerlab.recipes.classify import MAIN_METRIC, evaluate, evaluate_predictions, loss, predict  # noqa: F401
from towerlab.recipes.configs import DigitsConfig
from towerlab.recipes.mnist import ConvNet, class_names, prepare, transform  # noqa: F401

NAME = "digits"
INPUT_SHAPE = (1, 8, 8)  # what prepare() takes: grayscale, white digit on black


Config = DigitsConfig  # in recipes/configs.py, which imports no torch: a quick --help


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    return ConvNet(INPUT_SHAPE, 10, cfg.hidden, cfg.dropout_conv, cfg.dropout_fc)


def build_data(cfg: Config, dist) -> Data:
    # cfg.data is unused: the data ships inside scikit-learn.
    train, test = digits_data.load_split("train"), digits_data.load_split("test")
    return tensor_data(cfg, dist, train, test, transform)


def input_shape(cfg: Config) -> tuple[int, int, int]:
    return INPUT_SHAPE
