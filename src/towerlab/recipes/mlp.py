"""mlp: a multilayer perceptron on MNIST or the digits scans, the classic target of the genetic search."""

from __future__ import annotations


from torch import nn

from towerlab.data import digits as digits_data
from towerlab.data import mnist as mnist_data
from towerlab.data import resolve_dir
from towerlab.data.loader import Data, tensor_data
from towerlab.recipes.classify import MAIN_METRIC, evaluate, loss, predict  # noqa: F401
from towerlab.recipes.mnist import CLASSES, prepare, transform  # noqa: F401
from towerlab.recipes.configs import MlpConfig

NAME = "mlp"
ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8)}


Config = MlpConfig  # in recipes/configs.py, which imports no torch: a quick --help


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    c, h, w = SHAPES[cfg.dataset]
    layers, width = [nn.Flatten()], c * h * w
    for _ in range(cfg.hidden_layers):
        layers += [nn.Linear(width, cfg.units), ACTIVATIONS[cfg.activation](), nn.Dropout(cfg.dropout)]
        width = cfg.units
    return nn.Sequential(*layers, nn.Linear(width, 10))


def build_data(cfg: Config, dist) -> Data:
    if cfg.dataset == "digits":
        train, test = digits_data.load_split("train"), digits_data.load_split("test")
    else:
        root = resolve_dir(cfg.data, "mnist")
        train, test = mnist_data.load_split(root, "train"), mnist_data.load_split(root, "test")
    return tensor_data(cfg, dist, train, test, transform)


def class_names(cfg: Config) -> list[str]:
    return CLASSES


def input_shape(cfg: Config) -> tuple[int, int, int]:
    return SHAPES[cfg.dataset]
