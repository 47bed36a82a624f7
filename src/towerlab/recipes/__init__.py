"""The recipe registry: a table of entries, read without importing any recipe (or torch).

An entry names the module that implements a recipe, its one-line summary and its capabilities (see contract.py).
A family of recipes is one module with a parameter: fcn32s, fcn16s and fcn8s are the fcn module at three output
strides. `get(name)` imports the module and returns the recipe object the engine trains.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from towerlab.errors import ConfigError
from towerlab.recipes.configs import (
    ChemaaeConfig,
    ChemvaeConfig,
    Cifar10Config,
    DigitsConfig,
    MlpConfig,
    MnistConfig,
    SegdecConfig,
    SmilesLstmConfig,
    fcn_config,
)


@dataclass(frozen=True)
class Entry:
    name: str
    module: str  # towerlab.recipes.<module>
    config: Callable  # its Config class from recipes/configs.py (torch-free), or a factory of one taking params
    summary: str
    capabilities: tuple[str, ...]
    params: dict = field(default_factory=dict)  # a family member's parameters, passed to module.variant()


_FCN = ("segment", "predict_files", "examples")
ENTRIES = (
    Entry(
        "mnist",
        "mnist",
        MnistConfig,
        "the classic multi-GPU MNIST ConvNet (3 conv blocks, fc 2400) with RMSProp, on the MNIST IDX files",
        ("classify", "predictions"),
    ),
    Entry(
        "cifar10",
        "cifar10",
        Cifar10Config,
        "the TensorFlow CIFAR-10 tutorial CNN (conv-pool-LRN x2, fc 384-192), trained as the tutorial does",
        ("classify", "predictions", "param_groups"),
    ),
    Entry(
        "digits",
        "digits",
        DigitsConfig,
        "the MNIST ConvNet on scikit-learn's bundled 8x8 handwritten digits (real data, no download)",
        ("classify", "predictions"),
    ),
    Entry(
        "mlp",
        "mlp",
        MlpConfig,
        "a multilayer perceptron on MNIST or the digits scans, the classic target of the genetic search",
        ("classify", "predictions"),
    ),
    Entry(
        "fcn32s",
        "fcn",
        fcn_config,
        "FCN-32s semantic segmentation (VGG16 backbone; one 32x upsampling of the fc7 scores); ADE20K, VOC or CamVid",
        _FCN,
        {"stride": 32},
    ),
    Entry(
        "fcn16s",
        "fcn",
        fcn_config,
        "FCN-16s semantic segmentation (VGG16 backbone; 2x upsampled scores fused with pool4's, "
        "then 16x); ADE20K, VOC or CamVid",
        _FCN,
        {"stride": 16},
    ),
    Entry(
        "fcn8s",
        "fcn",
        fcn_config,
        "FCN-8s semantic segmentation (VGG16 backbone; fused again with pool3's, then 8x); ADE20K, VOC or CamVid",
        _FCN,
        {"stride": 8},
    ),
    Entry(
        "segdec",
        "segdec",
        SegdecConfig,
        "SegDecNet surface-defect detection (segmentation net + decision net, two-stage), on KolektorSDD",
        ("classify", "predict_files", "examples", "stages", "heatmap", "operating_point"),
    ),
    Entry(
        "chemvae",
        "chemvae",
        ChemvaeConfig,
        "a SMILES variational autoencoder with a property head (Gomez-Bombarelli et al. 2018), RDKit for chemistry",
        ("generate", "autoencode", "artifacts"),
    ),
    Entry(
        "chemaae",
        "chemaae",
        ChemaaeConfig,
        "the adversarial autoencoder for SMILES (druGAN; Blaschke et al. 2018): "
        "chemvae's encoder and decoder, a discriminator on the codes",
        ("generate", "autoencode", "artifacts", "train_step"),
    ),
    Entry(
        "smiles-lstm",
        "smiles_lstm",
        SmilesLstmConfig,
        "a SMILES LSTM language model (Segler et al. 2018; GuacaMol's "
        "baseline): sampling, hill-climb MLE, ChemTS tree search",
        ("generate", "sequence", "artifacts", "ragged_batches"),
    ),
)
REGISTRY: dict[str, Entry] = {e.name: e for e in ENTRIES}


def _entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ConfigError(f"unknown recipe {name!r}; `towerlab recipes` lists them: {', '.join(REGISTRY)}")
    return REGISTRY[name]


@cache
def get(name: str):
    """The recipe object of a registered name (its module, or a family member built by module.variant)."""
    entry = _entry(name)
    module = importlib.import_module(f"towerlab.recipes.{entry.module}")
    return module.variant(name, **entry.params) if entry.params else module


def capabilities(recipe_or_name) -> tuple[str, ...]:
    """A registered recipe's declared capabilities; a recipe of your own (not registered) declares them in its
    CAPABILITIES tuple."""
    if isinstance(recipe_or_name, str):
        return _entry(recipe_or_name).capabilities
    if recipe_or_name.NAME in REGISTRY:
        return REGISTRY[recipe_or_name.NAME].capabilities
    return tuple(getattr(recipe_or_name, "CAPABILITIES", ()))


def config_class(name: str) -> type:
    """The Config of a registered recipe, without importing the recipe (nor torch): what `--help` lists."""
    entry = _entry(name)
    return entry.config(**entry.params) if entry.params else entry.config


def has(recipe_or_name, capability: str) -> bool:
    return capability in capabilities(recipe_or_name)


def require(recipe_or_name, *wanted: str, command: str) -> None:
    """ConfigError in one line unless the recipe has one of `capabilities`: names the recipe, what `command`
    needs, and the recipes that have it."""
    from towerlab.recipes.contract import CAPABILITIES

    name = recipe_or_name if isinstance(recipe_or_name, str) else recipe_or_name.NAME
    if any(has(recipe_or_name, c) for c in wanted):
        return
    able = [e.name for e in ENTRIES if set(e.capabilities) & set(wanted)]
    wants = " or ".join(CAPABILITIES[c][1] for c in wanted)
    raise ConfigError(
        f"{command} needs a recipe that can {wants}; {name} cannot (it can: "
        f"{', '.join(capabilities(recipe_or_name)) or 'train and evaluate'}). Recipes that can: "
        f"{', '.join(able)}"
    )


def summary(name: str) -> str:
    return _entry(name).summary


def check_overrides(name: str, overrides: dict, where: str) -> None:
    """Field overrides for a recipe (a job's, a search's --set): unknown fields, wrong types and bad values fail when
    they are read, naming where they came from, not when a trial's turn comes."""
    from towerlab.config import merge

    cfg = merge(config_class(name)(), overrides, where)
    try:
        cfg.validate()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
