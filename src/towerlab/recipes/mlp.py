"""mlp: a multilayer perceptron on MNIST, CIFAR-10 (flattened pixels) or the digits scans, the classic target of the
genetic search (the "evolve a neural network" write-up searched it on MNIST and on CIFAR-10)."""

from __future__ import annotations

from torch import nn

from towerlab.data import cifar as cifar_data
from towerlab.data import digits as digits_data
from towerlab.data import mnist as mnist_data
from towerlab.data import resolve_dir
from towerlab.data.loader import Data, tensor_data
from towerlab.recipes.classify import MAIN_METRIC, evaluate, evaluate_predictions, folder_splits, loss, predict  # noqa: F401
from towerlab.recipes.configs import MlpConfig
from towerlab.recipes.mnist import CLASSES, prepare, transform  # noqa: F401

NAME = "mlp"
ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}


Config = MlpConfig  # in recipes/configs.py, which imports no torch: a quick --help


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    c, h, w = input_shape(cfg)
    layers, width = [nn.Flatten()], c * h * w
    for _ in range(cfg.hidden_layers):
        layers += [nn.Linear(width, cfg.units), ACTIVATIONS[cfg.activation](), nn.Dropout(cfg.dropout)]
        width = cfg.units
    return nn.Sequential(*layers, nn.Linear(width, len(class_names(cfg))))


def build_data(cfg: Config, dist) -> Data:
    found = folder_splits(cfg, input_shape(cfg))
    if found:  # an image folder, read at the size and channels of `dataset`'s images (or --image-size)
        return tensor_data(cfg, dist, *found, transform)
    if cfg.dataset == "digits":
        train, test = digits_data.load_split("train"), digits_data.load_split("test")
    elif cfg.dataset == "cifar10":
        root = resolve_dir(cfg.data, "cifar10")
        train, test = cifar_data.items(root, "train"), cifar_data.items(root, "test")
    else:
        root = resolve_dir(cfg.data, "mnist")
        train, test = mnist_data.items(root, "train"), mnist_data.items(root, "test")
    return tensor_data(cfg, dist, train, test, transform)


def class_names(cfg: Config) -> list[str]:
    return cfg.class_list() or (list(cifar_data.CLASSES) if cfg.dataset == "cifar10" else CLASSES)


def input_shape(cfg: Config) -> tuple[int, int, int]:
    size = cfg.size()
    return (SHAPES[cfg.dataset][0], *size) if size else SHAPES[cfg.dataset]
