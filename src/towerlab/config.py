"""Dataclass configs: defaults in code, overridden by a YAML file, overridden by CLI flags.

Every recipe's `Config` subclasses `TrainConfig`, so one dataclass holds every knob of a run and
is written to the run directory as `config.yaml`. Fields carry their help text and allowed values in
`field(metadata=...)`, which is what `towerlab train RECIPE --help` prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from towerlab.errors import ConfigError


def opt(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field with help text (and optionally the allowed values)."""
    return field(default=default, metadata={"help": help, "choices": choices})


# the keys of strategy.STRATEGIES, listed here because this module imports no torch (`--help` stays quick);
# strategy.py refuses to import when the two disagree
STRATEGY_NAMES = ("ddp", "fsdp", "pipeline")


@dataclass
class TrainConfig:
    """Engine settings shared by every recipe. Recipes override the defaults they publish."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("data", "init_from")  # stored absolute (config.build)
    data: str = opt("", "dataset folder (default: $TOWERLAB_DATA/<dataset>)")
    seed: int = opt(0, "random seed (model init, data order, augmentation)")
    init_from: str = opt("", "start from the best weights of this run directory (tensors matched by name and shape)")
    init_checkpoint: str = opt(
        "best",
        "which weights of --init-from: its best by the validation metric, or its last "
        "(when the validation split is a test split, as in cross-validation)",
        ("best", "last"),
    )
    # how long
    epochs: float = opt(10.0, "training length in passes over the training set")
    max_steps: int = opt(0, "if > 0, train exactly this many optimizer steps (overrides epochs)")
    batch_size: int = opt(128, "global batch: all processes together, per optimizer step")
    accum_steps: int = opt(1, "split each process's slice into this many micro-batches (gradient accumulation)")
    # optimizer
    optimizer: str = opt(
        "sgd", "optimizer", ("sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta", "adamax", "nadam")
    )
    lr: float = opt(
        0.1,
        "peak learning rate (0: the optimizer's usual one: sgd 0.01, adagrad 0.01, adadelta 1.0, "
        "adamax/nadam 2e-3, the others 1e-3)",
    )
    momentum: float = opt(0.0, "momentum (sgd, rmsprop)")
    rms_decay: float = opt(0.9, "RMSProp moving-average decay (PyTorch's alpha)")
    beta1: float = opt(0.9, "Adam-family beta1")
    beta2: float = opt(0.999, "Adam-family beta2")
    eps: float = opt(1e-8, "optimizer epsilon")
    weight_decay: float = opt(0.0, "weight decay, applied only to the parameters the recipe names")
    clip_grad: float = opt(0.0, "if > 0, clip the global gradient norm to this value")
    # learning-rate schedule
    schedule: str = opt("constant", "learning-rate schedule", ("constant", "step", "exp", "cosine", "onecycle"))
    decay_epochs: float = opt(30.0, "step/exp: epochs per decay period")
    decay_rate: float = opt(0.1, "step/exp: factor per decay period")
    staircase: bool = opt(True, "exp: decay in whole periods (TensorFlow's staircase=True)")
    warmup_steps: int = opt(0, "linear warm-up from 0 over this many steps")
    min_lr_ratio: float = opt(0.0, "cosine/onecycle: final lr as a fraction of the peak")
    ema_decay: float = opt(0.0, "if > 0, evaluate an exponential moving average of the weights with this decay")
    # stopping early (the schedule keeps its length: stopping never changes a step taken before it)
    stop_at: float = opt(0.0, "if > 0, stop once the validation main metric reaches this value (time to accuracy)")
    patience: int = opt(
        0,
        "if > 0, stop after this many evaluations without a better validation loss (early "
        "stopping; the recipe's main metric where it reports no loss)",
    )
    # preemption (preempt.py): a signal makes every rank checkpoint at the next step and the command exit with 3
    preempt_signals: str = opt(
        "SIGTERM,SIGUSR1",
        "signals that stop the run with a checkpoint at the next step, to be continued with --resume (empty: none)",
    )
    requeue: bool = opt(False, "under SLURM, after that checkpoint: `scontrol requeue $SLURM_JOB_ID`")
    # evaluation, logging, checkpoints
    eval_every_epochs: float = opt(1.0, "evaluate every this many epochs (0: only at the end)")
    eval_every_steps: int = opt(0, "if > 0, evaluate every this many steps instead")
    ckpt_every_steps: int = opt(
        0, "if > 0, also checkpoint every this many steps (a checkpoint follows every evaluation)"
    )
    keep_checkpoints: int = opt(
        3, "checkpoints kept on disk besides the best (an older one is what a damaged newest one falls back to)"
    )
    checkpoint: str = opt(
        "full",
        "full: one file of whole tensors written by rank 0; sharded (strategy=fsdp): every rank writes its own "
        "shards at once (torch.distributed.checkpoint), read back at any world size; sharded-async: the same, "
        "written by a background thread while training goes on (it counts once the next checkpoint or the run's "
        "end finds it written)",
        choices=("full", "sharded", "sharded-async"),
    )
    val_fraction: float = opt(
        0.0,
        "if > 0, validate on this fraction of the training items (the same items for "
        "every seed), never trained on: early stopping and the best checkpoint are then "
        "chosen without the test split, which is scored once per better validation "
        "(final.json best.test)",
    )
    eval_limit: int = opt(
        0,
        "if > 0, evaluate on the first this many validation items only (quick runs; the metrics then carry eval_items)",
    )
    log_every: int = opt(50, "log loss and throughput every this many steps")
    mlflow: str = opt("", "MLflow tracking URI (default: $MLFLOW_TRACKING_URI; neither: no tracking)")
    mlflow_experiment: str = opt("", "MLflow experiment (default: the recipe's name)")
    mlflow_log_model: bool = opt(False, "at the end, also upload the run's model exported as ONNX to MLflow")
    system_metrics: bool = opt(
        True, "log host memory and CPU use (and on a GPU its memory and utilisation) beside the loss"
    )
    tb_histograms: int = opt(
        0,
        "if > 0, every this many steps write per-layer activation, gradient and weight "
        "histograms, zero fractions, norms and update-to-weight ratios to TensorBoard",
    )
    # speed
    fast: bool = opt(
        False,
        "choose the speed settings that pay off on this device (printed at the start; on the "
        "CPU: bf16 where it has the instructions, channels_last, no compile; on a GPU: bf16, "
        "channels_last, torch.compile, data in GPU memory)",
    )
    precision: str = opt("fp32", "arithmetic precision", ("fp32", "bf16", "fp16"))
    compile: bool = opt(False, "torch.compile the model")
    compile_mode: str = opt(
        "default", "torch.compile mode", ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    )
    channels_last: bool = opt(False, "NHWC memory layout for convolutions")
    data_on_device: bool = opt(
        True, "hold the whole dataset in accelerator memory (else copy each batch from the host)"
    )
    loader: str = opt(
        "auto",
        "memory: decode the whole dataset into each process's memory; stream: worker processes "
        "read and decode items as batches are needed; auto: memory when the decoded data of "
        "every process on the machine fits --data-memory",
        ("auto", "memory", "stream"),
    )
    data_memory: str = opt(
        "",
        "what the decoded data of all processes on a machine may take before auto streams it "
        "(e.g. 4GB; default: half the machine's memory)",
    )
    workers: int = opt(2, "stream: processes reading and decoding items, each a few batches ahead")
    skip_bad_files: bool = opt(
        False,
        "stream: an item that cannot be read is replaced by the next one that can "
        "(counted in the log), instead of stopping the run with its name",
    )
    sync_bn: bool = opt(False, "SyncBatchNorm across processes")
    strategy: str = opt(
        "ddp",
        "how the model uses the devices: ddp (a replica per process), fsdp (sharded across the "
        "processes: parameters, gradients, optimizer state) or pipeline (one process, the model "
        "cut into stages on --pipeline-devices)",
        STRATEGY_NAMES,
    )
    pipeline_devices: str = opt(
        "",
        "with strategy=pipeline: a device per stage, e.g. cuda:0,cuda:1 (default: every "
        "visible GPU; two CPU stages without one)",
    )
    pipeline_chunks: int = opt(4, "with strategy=pipeline: micro-batches per batch (more keeps the stages busier)")
    deterministic: bool = opt(False, "deterministic algorithms (bitwise-reproducible on the CPU)")

    def default_data(self) -> str:
        """The folder (or file) under $TOWERLAB_DATA that an empty `data` means ("" for a recipe that reads none).
        config.build writes its absolute path into `data`, so that a run records what it read and eval, predict,
        report and --resume find the same files without $TOWERLAB_DATA."""
        return ""

    def discover(self) -> None:
        """What the data folder says about the run, filled in by config.build and recorded in config.yaml (an image
        folder's class names); nothing for most recipes."""

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        for f in dataclasses.fields(self):
            choices = field_meta(type(self), f.name).get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"{f.name}={short(value)} is not allowed; choose one of {', '.join(choices)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r} must be a finite number")
        if self.checkpoint.startswith("sharded") and self.strategy != "fsdp":
            raise ConfigError(
                f"checkpoint={self.checkpoint} keeps the shards of strategy=fsdp; with strategy={self.strategy} every "
                f"process holds the whole model: leave checkpoint=full"
            )
        positive = ("batch_size", "accum_steps", "log_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0")
        for name in (
            "epochs",
            "max_steps",
            "weight_decay",
            "clip_grad",
            "warmup_steps",
            "ckpt_every_steps",
            "eval_limit",
            "tb_histograms",
            "stop_at",
            "patience",
            "eval_every_steps",
            "eval_every_epochs",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr < 0:  # 0 is documented: the optimizer's usual rate
            raise ConfigError(f"lr={self.lr} must be >= 0 (0: the optimizer's usual rate)")
        from towerlab import secrets

        if secrets.has_password(self.mlflow):  # config.yaml, MLflow's params and the report would hold it
            raise ConfigError(
                f"mlflow={secrets.mask_url(self.mlflow)}: the URI holds a password; give it without, "
                f"and the credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                f"(MLflow reads them from the environment)"
            )
        if self.epochs == 0 and self.max_steps == 0:
            raise ConfigError("epochs=0 and max_steps=0: set one of them to a positive value")
        import signal as _signal

        unknown = [
            n
            for n in self.preempt_signals.split(",")
            if n.strip() and not isinstance(getattr(_signal, n.strip().upper(), None), _signal.Signals)
        ]
        if unknown:
            raise ConfigError(f"preempt_signals: {unknown[0]!r} is not a signal name; write e.g. SIGTERM,SIGUSR1")
        if self.workers < 0:
            raise ConfigError(f"workers={self.workers} must be >= 0 (0: read in the training process)")
        if self.data_memory:
            parse_bytes(self.data_memory)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay={self.ema_decay} must be in [0, 1)")


UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_bytes(text: str) -> int:
    """'4GB', '512 MiB', '1e9' -> bytes; a value that is not one is a ConfigError naming it."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text or "")
    if not m or m.group(2).upper() not in UNITS:
        raise ConfigError(f"data_memory={text!r} is not an amount of memory; write e.g. 4GB, 512MiB")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def field_meta(cls: type, name: str) -> dict:
    """Help and choices of a field; a recipe that overrides only a default inherits them from TrainConfig."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata:
            return dict(f.metadata)
    return {}


def _coerce(name: str, kind: type, value: Any) -> Any:
    """Check one value from YAML against the field's type ('3' is not an int, 3 is a float)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string; accept it as the number it plainly is
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {short(value)}")
    return value


def _field_types(cls: type) -> dict[str, type]:
    hints = {"int": int, "float": float, "str": str, "bool": bool}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in dataclasses.fields(cls)}


def merge(cfg: Any, overrides: dict, source: str) -> Any:
    """A copy of cfg with overrides applied; unknown fields and wrong types raise ConfigError."""
    types = _field_types(type(cfg))
    changes = {}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in types:
            raise ConfigError(f"{source}: unknown field {key!r}; `towerlab train RECIPE --help` lists the fields")
        changes[name] = _coerce(f"{source}: {key}", types[name], value)
    return dataclasses.replace(cfg, **changes)


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in a command line, before it is parsed."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


# A config is a few hundred values. YAML's aliases let 278 bytes stand for 254 MB of nested lists (a "billion
# laughs"): the node graph is measured with aliases expanded before anything is built from it.
MAX_YAML_BYTES = 4 * 2**20
MAX_YAML_NODES = 100_000


def _expanded_size(node, memo: dict) -> int:
    """How many nodes the document holds with every alias written out (each shared node is counted once per use,
    computed once: linear in the graph, however deep the nesting)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_YAML_NODES + 1  # a node reached again while being measured: a cycle, too big to build
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, memo)
        if total > MAX_YAML_NODES:
            break
    memo[id(node)] = total
    return total


def safe_yaml(text: str, where: str):
    """yaml.safe_load, with documents whose aliases expand out of proportion refused in one line."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: {len(text):,} bytes is far more than a config file; pass the right file")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{where}: its aliases expand to more than {MAX_YAML_NODES:,} values; write the values "
                f"out, or use fewer nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def short(value, limit: int = 80) -> str:
    """repr(value), cut to one readable line for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; check the path (it must be an existing YAML file)")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(
            f"config file {path}: {path.stat().st_size:,} bytes is far more than a config file; pass the right file"
        )
    try:
        data = safe_yaml(path.read_text(), f"config file {path}") or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML ({str(e).splitlines()[0]}); fix its syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text (UTF-8); pass the YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, not {type(data).__name__}")
    return data


def save_yaml(data: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per field; defaults are shown but not set, so only given flags override."""
    types = _field_types(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        kind = types[f.name]
        flags = [f"--{f.name.replace('_', '-')}"]
        default = getattr(defaults, f.name)
        meta = field_meta(cls, f.name)
        choices = f"one of {', '.join(meta['choices'])}" if meta.get("choices") else ""
        shown = "" if "(default:" in meta.get("help", "") or default == "" else f"default: {default}"
        extra = "; ".join(filter(None, (choices, shown)))
        help = f"{meta.get('help', '')}" + (f" ({extra})" if extra else "")
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help)
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(*flags, type=kind, choices=meta.get("choices"), metavar=kind.__name__.upper(), **kwargs)


def _absolute_paths(cfg: Any) -> None:
    """Make the config's file and folder paths absolute, as they were meant from where the command ran: config.yaml
    keeps them so, and a resumed run, `eval` or `chem sample` finds the same files from any folder."""
    for name in type(cfg).PATH_FIELDS:
        value = getattr(cfg, name)
        if value:
            setattr(cfg, name, str(Path(value).expanduser().absolute()))


def _record_data_folder(cfg: Any) -> None:
    """An empty `data` becomes the absolute $TOWERLAB_DATA/<default> it stands for, when that exists (else the
    recipe's reader names what is missing, when it reads)."""
    default, root = cfg.default_data(), os.environ.get("TOWERLAB_DATA", "")
    if not cfg.data and default and root and (Path(root).expanduser() / default).exists():
        cfg.data = str((Path(root).expanduser() / default).absolute())


def build(cls: type, yaml_file: str | None, cli_values: dict, file_values: dict | None = None) -> Any:
    """Recipe defaults < YAML file < CLI flags, validated; the data folder made explicit and absolute. file_values:
    the YAML file's content when the caller has read it already (it is read once per command)."""
    cfg = cls()
    from_file = file_values if file_values is not None else load_yaml(yaml_file) if yaml_file else {}
    if from_file:
        cfg = merge(cfg, from_file, str(yaml_file or "the config file"))
    cfg = merge(cfg, cli_values, "command line")
    _record_data_folder(cfg)
    cfg.discover()
    _absolute_paths(cfg)
    if cfg.fast:  # torch-free: the field names only
        from towerlab.perf import FAST_FIELDS

        given = [k.replace("-", "_") for k in [*cli_values, *from_file]]
        mixed = sorted(set(FAST_FIELDS) & set(given))
        if mixed:
            raise ConfigError(
                f"--fast chooses {', '.join(FAST_FIELDS)} for the device; drop --fast, or drop "
                f"{', '.join(mixed)} and let it choose"
            )
    cfg.validate()
    return cfg
