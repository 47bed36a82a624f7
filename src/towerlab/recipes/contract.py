"""The contract between the engine and a recipe, written down as typing Protocols.

Every recipe is a `Recipe`. What else it can do it declares in the registry as capabilities, each a small protocol
below; a command that needs one asks the registry (`recipes.require`) and says in one line which recipe lacks it.
Nothing in the engine discovers a hook with hasattr.

    capability      protocol          what asks for it
    classify        ImageClassifier   predict on image files, serve, ensemble, data export
    segment         PixelClassifier   ensemble (per-pixel probabilities), data export
    predict_files   FilePredictor     predict (recipes whose outputs are images of their own)
    examples        ExampleDrawer     the engine: pictures of the outputs in TensorBoard at each evaluation
    heatmap         HeatMapper        serve: where in a row's image its grade comes from (a defect's heat map)
    predictions     KeepsPredictions  the engine: the best evaluation's predictions, which the report reads
    operating_point OperatingPoint    the engine: the test split scored at the threshold validation chose
    stages          Staged            train: one run directory per stage, each from the best weights of the last
    artifacts       RunArtifacts      the engine: files a run needs besides weights (a vocabulary)
    param_groups    OwnParamGroups    the engine: which parameters get weight decay
    optimizer       OwnOptimizer      the engine: the recipe builds its optimizer (LARS, Muon, per-group betas)
    train_step      OwnTrainStep      the engine: the recipe takes each optimizer step itself
    generate        Generator         `chem sample`
    autoencode      Autoencoder       `chem encode`, `chem decode`, `chem optimize`
    sequence        SequenceModel     `chem hillclimb`, `chem mcts`
    ragged_batches  RaggedBatches     the engine: leaves the host allocator as it is (perf.keep_freed_memory)

A recipe that is not in the registry (one of your own, passed to engine.fit) declares its capabilities in a
module-level CAPABILITIES tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from towerlab.data.loader import Data  # noqa: F401 (part of the contract: what build_data returns)
from towerlab.precision import Precision


@dataclass(frozen=True)
class Step:
    """Where training stands when the loss is computed: a schedule inside a loss (a KL warm-up) reads it."""

    step: int  # optimizer steps taken before this one (0 at the first)
    total: int  # optimizer steps the run will take
    epoch: float  # step / steps per epoch


@runtime_checkable
class Recipe(Protocol):
    NAME: str
    MAIN_METRIC: tuple[str, str]  # (metric, "max" | "min")
    Config: type  # a TrainConfig subclass: every hyperparameter, with the published defaults

    def build_data(self, cfg, dist) -> Data:
        """Loaders yielding this process's slice of each batch as a tuple of tensors, and what the model must know
        of the data (meta)."""

    def build_model(self, cfg, data: Data | None = None) -> nn.Module:
        """The model, from the data's meta when training; data is None when a trained run is rebuilt from its
        directory (its config and artifacts must then suffice)."""

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], step: Step) -> tuple[torch.Tensor, dict]:
        """(loss to minimise, logs: 0-d device tensors the engine averages and writes every log_every steps)."""

    def evaluate(self, model: nn.Module, loader, dist) -> dict[str, float]:
        """Metrics over the whole loader, reduced across processes (MAIN_METRIC among them)."""


@runtime_checkable
class ImageClassifier(Protocol):
    """Whole images of a fixed shape in, class probabilities out."""

    def input_shape(self, cfg) -> tuple[int, int, int]: ...  # (C, H, W) that prepare() takes

    def prepare(self, cfg, images: torch.Tensor) -> torch.Tensor: ...  # uint8 [N, C, H, W] -> model input

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor: ...  # [N, classes]

    def class_names(self, cfg) -> list[str]: ...


@runtime_checkable
class PixelClassifier(Protocol):
    """Images of any size in, per-pixel class probabilities out."""

    def prepare(self, cfg, images: torch.Tensor) -> torch.Tensor: ...

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor: ...  # [N, classes, H, W]

    def class_names(self, cfg) -> list[str]: ...


@runtime_checkable
class FilePredictor(Protocol):
    def predict_files(self, model: nn.Module, cfg, paths: list[str], out_dir: str | None) -> list[dict]:
        """Predict on image files, writing its pictures (label maps, heat maps); one result dict per file."""


@runtime_checkable
class HeatMapper(Protocol):
    def heatmaps(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """[N, H, W] in 0..1 at the inputs' size: where in each image the model sees what it grades (a defect)."""


@runtime_checkable
class KeepsPredictions(Protocol):
    def evaluate_predictions(
        self, model: nn.Module, loader, dist
    ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """evaluate's metrics, and this process's items' class probabilities [n, classes] and labels [n] in the order
        the loader yielded them (the engine gathers them: the report reads the best evaluation's, never evaluates
        again)."""


@runtime_checkable
class OperatingPoint(Protocol):
    def evaluate_at(self, model: nn.Module, loader, dist, validation: dict[str, float]) -> dict[str, float]:
        """evaluate's metrics, and the decisions at the operating threshold the validation metrics chose (errors,
        F1 and accuracy there): a test split is judged at the point a user would deploy, not at its own best."""


@runtime_checkable
class ExampleDrawer(Protocol):
    def examples(self, model: nn.Module, loader) -> torch.Tensor: ...  # uint8 [N, 3, H, W]


@runtime_checkable
class Staged(Protocol):
    def stages(self, cfg) -> list[tuple[str, object]]: ...  # [(stage name, its config)], trained in order


@runtime_checkable
class RunArtifacts(Protocol):
    def save_artifacts(self, cfg, data: Data, run_dir: Path) -> None: ...

    def with_artifacts(self, cfg, run_dir: Path):
        """cfg pointing at the files save_artifacts wrote, so build_model(cfg) rebuilds the trained model."""


@runtime_checkable
class OwnParamGroups(Protocol):
    def decay_params(self, model: nn.Module) -> list[str]: ...  # parameter names that get weight decay


@runtime_checkable
class OwnOptimizer(Protocol):
    def build_optimizer(self, cfg, groups: list[dict]) -> torch.optim.Optimizer:
        """The optimizer over `groups` (the engine's weight-decay groups; the learning-rate schedule still
        multiplies each group's lr)."""


@runtime_checkable
class OwnTrainStep(Protocol):
    def train_step(
        self,
        model: nn.Module,
        batch: tuple[torch.Tensor, ...],
        step: Step,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
    ) -> dict[str, torch.Tensor]:
        """One whole optimizer step (zero, forward, backward, step) on this process's batch; returns its logs as 0-d
        device tensors, "loss" among them. Backward and the step go through `precision` (precision.py: fp16's loss
        scaling, unscale before clipping), as in every other training loop. The engine still schedules the lr,
        keeps the EMA, logs, checkpoints. Under DDP the gradients of `model` are averaged in backward as usual."""


@runtime_checkable
class Generator(Protocol):
    """A generative model of molecules: what `towerlab chem sample` drives. Token indices are those of the run's
    vocab.json (saved by its artifacts); 0 ends a molecule."""

    def build_model(self, cfg, data: Data | None = None) -> nn.Module: ...

    def save_artifacts(self, cfg, data: Data, run_dir: Path) -> None: ...

    def data_file(self, cfg) -> Path: ...  # the SMILES file the config names (absolute, or $TOWERLAB_DATA's)

    def prepared(self, cfg):  # -> chem.corpus.Prepared
        """The corpus the run trained on: its training and held-out molecules (novelty, optimisation seeds)."""

    def sample(self, model: nn.Module, n: int, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        """n molecules as token indices [n, L]; temperature 0 = the most probable token at each step."""


@runtime_checkable
class Autoencoder(Protocol):
    """Molecules to points of a latent space and back: `chem encode / decode / optimize`."""

    def encode(self, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor: ...  # [N, L] -> [N, latent]

    def decode(
        self, model: nn.Module, z: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor: ...  # [N, latent] -> [N, L]

    def latent_size(self, model: nn.Module) -> int: ...


@runtime_checkable
class SequenceModel(Protocol):
    """A left-to-right model of token sequences: `chem hillclimb` fine-tunes it with the recipe's loss on batches
    of (tokens,); `chem mcts` walks its next-token distributions; `chem reinvent` pulls its log-likelihoods."""

    def initial_state(self, model: nn.Module, n: int) -> tuple[torch.Tensor, ...]:
        """The state before the first token: tensors with the batch in dimension 1 (indexable per molecule)."""

    def next_logits(
        self, model: nn.Module, last: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Logits [N, V] of the token after `last` [N], and the state after it (the first `last` is 0)."""

    def log_likelihood(self, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """log P(sequence) [N] of token sequences [N, L] (0-padded after the end), differentiable."""


@runtime_checkable
class RaggedBatches(Protocol):
    """A declaration, no hook: the tensors of a training step change shape from step to step (a SMILES batch is cut
    to its longest molecule). Keeping freed memory in the process (perf.keep_freed_memory) then fragments the heap:
    measured on a 3 x 512 LSTM at batch 128, resident memory grew from 2.4 to 4.3 GB in 100 steps of random length
    and on (7.7 GB after 800 steps of the broad-corpus prior), against 0.65-0.79 GB flat with glibc's own
    thresholds, for a step ~15% slower; at one fixed length it stayed at 2.0 GB."""


CAPABILITIES: dict[str, tuple[type, str]] = {  # name -> (protocol, what a recipe that has it can do)
    "classify": (ImageClassifier, "classify whole images"),
    "segment": (PixelClassifier, "label the pixels of images"),
    "predict_files": (FilePredictor, "write predictions for image files"),
    "examples": (ExampleDrawer, "draw its outputs"),
    "predictions": (KeepsPredictions, "keep its validation predictions"),
    "operating_point": (OperatingPoint, "score a test split at the threshold validation chose"),
    "heatmap": (HeatMapper, "show where in an image its grade comes from"),
    "stages": (Staged, "train in stages"),
    "artifacts": (RunArtifacts, "save files beside its weights"),
    "param_groups": (OwnParamGroups, "name its decayed parameters"),
    "optimizer": (OwnOptimizer, "build its own optimizer"),
    "train_step": (OwnTrainStep, "take its own training step"),
    "generate": (Generator, "generate molecules"),
    "autoencode": (Autoencoder, "encode molecules to a latent space and decode them"),
    "sequence": (SequenceModel, "write molecules token by token (hill-climb, tree search, REINVENT)"),
    "ragged_batches": (RaggedBatches, "train on batches whose shapes change every step"),
}
