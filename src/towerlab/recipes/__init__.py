"""The recipe registry: name -> module. A recipe module provides

    NAME, MAIN_METRIC = (metric, "max"|"min"), Config (a TrainConfig subclass with the published defaults),
    build_model(cfg), build_data(cfg, dist) -> (train_loader, val_loader), loss(model, batch) -> (loss, logs),
    evaluate(model, loader, dist) -> metrics, predict(model, inputs) -> probabilities,
    input_shape(cfg) -> (C, H, W) that prepare() takes, or None for any size (fully convolutional),
    prepare(cfg, uint8 images [N, C, H, W]) -> model input (for files and rows), class_names(cfg),
    and optionally: decay_params(model) -> names; predict_files(model, cfg, paths, out_dir) -> results
    (a recipe whose outputs are images of their own); examples(model, val_loader) -> uint8 [N,3,H,W] for TensorBoard.
"""

from __future__ import annotations

from types import ModuleType

from towerlab.errors import ConfigError
from towerlab.recipes import chemvae, cifar10, digits, fcn8s, fcn16s, fcn32s, mlp, mnist, segdec

REGISTRY: dict[str, ModuleType] = {m.NAME: m for m in (mnist, cifar10, digits, mlp, fcn32s, fcn16s, fcn8s, segdec, chemvae)}


def get(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise ConfigError(f"unknown recipe {name!r}; `towerlab recipes` lists them: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]
