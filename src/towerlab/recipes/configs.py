"""Every registered recipe's Config, in one module that imports no torch: `towerlab train RECIPE --help` builds
its flags from here (under 0.5 s of CPU). Each recipe module re-exports its own as `Config`. Every default names
where it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import ClassVar

from towerlab.config import TrainConfig, opt
from towerlab.errors import ConfigError

ACTIVATIONS = ("relu", "elu", "tanh", "sigmoid")  # mlp: the classic search's activation genes
REPRESENTATIONS = ("smiles", "selfies")  # chemvae: the strings the model reads and writes
CHEMVAE_DEFAULT_FILE = "zinc250k_jtvae/valid.txt"  # under $TOWERLAB_DATA: 24,445 ZINC molecules of the 250k set
SMILES_LSTM_DEFAULT_FILE = "moses/train.csv.gz"  # under $TOWERLAB_DATA: 250,000 MOSES training molecules


@dataclass
class ImageFolderConfig(TrainConfig):
    """A classifier that also reads your own images: --data DIR with a folder per class (data/folder.py)."""

    classes: str = opt(
        "",
        "class names in label order, comma-separated: read from an image folder's class folders "
        "(sorted, as ImageFolder) when the run starts and kept with it; empty for the benchmark "
        "formats",
    )
    image_size: str = opt("", "HxW the images of an image folder are resized to (default: the recipe's input size)")

    def discover(self) -> None:
        from towerlab.data import folder

        if not self.data or folder.layout(self.data) is None:
            return
        found = ",".join(folder.classes(self.data))
        if self.classes and self.classes != found:
            raise ConfigError(
                f"classes={self.classes} but the image folder {self.data} has {found}; drop --classes "
                f"(it is read from the folder) or pass the folder the run was trained on"
            )
        self.classes = found
        if folder.layout(self.data) == "flat" and not self.val_fraction:
            raise ConfigError(
                f"{self.data} holds class folders but no train/ and val/: pass --val-fraction F (e.g. "
                f"0.1) to validate on a fixed part of the images, or split them into train/ and val/"
            )

    def class_list(self) -> list[str]:
        return self.classes.split(",") if self.classes else []

    def size(self) -> tuple[int, int] | None:
        """image_size as (H, W), or None for the recipe's own."""
        if not self.image_size:
            return None
        h, sep, w = self.image_size.lower().partition("x")
        if not (sep and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0):
            raise ConfigError(f"image_size={self.image_size!r}: write HEIGHTxWIDTH, e.g. 64x64")
        return int(h), int(w)

    def validate(self) -> None:
        super().validate()
        self.size()
        if self.classes and len(self.class_list()) < 2:
            raise ConfigError(f"classes={self.classes}: a classifier needs at least 2 classes (class folders)")


@dataclass
class MnistConfig(ImageFolderConfig):
    # RMSProp, lr 1e-3, decay 0.9, batch 128: the classic multi-GPU MNIST example's settings. Measured on the
    # complete MNIST (docs/results.md): its constant lr for 10 epochs ends at 99.29%; shifts of up to 2 pixels and a
    # cosine decay over 12 epochs end at 99.5%, so those are the defaults.
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    rms_decay: float = 0.9
    schedule: str = "cosine"
    epochs: float = 12.0
    batch_size: int = 128
    dropout_conv: float = opt(0.25, "dropout after each conv block")
    dropout_fc: float = opt(0.5, "dropout after the 2400-unit layer")
    hidden: int = opt(2400, "units of the fully connected layer")
    shift: int = opt(2, "training augmentation: translate each image by up to this many pixels (0: none)")

    def validate(self) -> None:
        super().validate()
        if self.shift < 0:
            raise ConfigError(f"shift={self.shift} must be >= 0")

    def default_data(self) -> str:
        return "mnist"


@dataclass
class DigitsConfig(MnistConfig):
    # The mnist recipe's model and optimizer; 30 epochs of the 1,437 training scans take seconds on a CPU. No shifts
    # (2 pixels of an 8x8 scan is a quarter of it) and the classic constant lr.
    schedule: str = "constant"
    shift: int = 0
    epochs: float = 30.0
    batch_size: int = 64
    log_every: int = 20

    def default_data(self) -> str:
        return ""  # scikit-learn's bundled scans

    def discover(self) -> None:
        """scikit-learn's scans only: an image folder is for mnist, mlp or cifar10."""


@dataclass
class MlpConfig(ImageFolderConfig):
    # The genes of the classic "evolve a neural network" search: layers, units, activation, optimizer; each optimizer
    # at its usual learning rate (lr 0), as the write-up's Keras defaults had it.
    optimizer: str = "adam"
    lr: float = 0.0
    epochs: float = 10.0
    batch_size: int = 128
    log_every: int = 20
    dataset: str = opt(
        "mnist",
        "MNIST IDX files, CIFAR-10 (flattened pixels), or scikit-learn's digits (no download)",
        ("mnist", "cifar10", "digits"),
    )
    hidden_layers: int = opt(2, "hidden layers")
    units: int = opt(512, "units per hidden layer")
    activation: str = opt("relu", "activation", ACTIVATIONS)
    dropout: float = opt(0.2, "dropout after each hidden layer")

    def default_data(self) -> str:
        return "" if self.dataset == "digits" else self.dataset


@dataclass
class Cifar10Config(ImageFolderConfig):
    # Defaults of tensorflow/models tutorials/image/cifar10 (cifar10.py, cifar10_train.py):
    # plain SGD, lr 0.1 decayed x0.1 (staircase) every 350 epochs, weight decay 0.004 on the two
    # fully connected layers, batch 128, evaluation with a 0.9999 moving average of the weights.
    # 256 epochs is the tutorial's "~86% after 100K steps" point on the full 50,000 images.
    optimizer: str = "sgd"
    lr: float = 0.1
    schedule: str = "exp"
    decay_epochs: float = 350.0
    decay_rate: float = 0.1
    staircase: bool = True
    weight_decay: float = 0.004
    ema_decay: float = 0.9999
    batch_size: int = 128
    epochs: float = 256.0
    max_brightness: float = opt(63.0, "random brightness: max delta on the 0..255 scale")
    contrast_lower: float = opt(0.2, "random contrast: lowest factor")
    contrast_upper: float = opt(1.8, "random contrast: highest factor")

    def validate(self) -> None:
        super().validate()
        if self.image_size:
            raise ConfigError(
                f"image_size={self.image_size}: the tutorial's network takes 24x24 crops of 32x32 "
                f"images, which an image folder's images are resized to; leave image_size empty"
            )

    def default_data(self) -> str:
        return "cifar10"


@dataclass
class FcnConfig(TrainConfig):
    STRIDE: ClassVar[int] = 32  # output stride of the variant: 32, 16 or 8
    # The paper (sec. 4.3): SGD, momentum 0.9, minibatch 20 images, lr 1e-4 for FCN-VGG16, weight decay 5e-4,
    # starting from ImageNet VGG16 weights. Without those weights, train with adam and a higher lr (docs/results.md).
    optimizer: str = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 20
    epochs: float = 50.0
    log_every: int = 10
    dataset: str = opt(
        "camvid",
        "on-disk layout of --data (folder: your own images/, masks/ and classes.csv)",
        ("camvid", "ade20k", "voc", "folder"),
    )
    train_split: str = opt("", "training split (default: the dataset's: train, or training for ade20k)")
    val_split: str = opt("", "evaluation split (default: val, or validation for ade20k)")
    crop_height: int = opt(
        0, "training crop height in pixels: each image scaled and cropped where it is read (0: the whole padded batch)"
    )
    crop_width: int = opt(0, "training crop width in pixels (with crop_height)")
    # random scale and mirroring are modern practice; the paper trained without (no gain on VOC, sec. 4.3)
    scale_min: float = opt(0.5, "random scale: smallest zoom factor")
    scale_max: float = opt(2.0, "random scale: largest zoom factor")
    flip: bool = opt(True, "random left-right mirroring")
    backbone_weights: str = opt("", "torchvision VGG16 state dict (.pth or .safetensors) to start the backbone from")
    width: float = opt(1.0, "backbone channel multiplier (1.0 = VGG16; smaller for CPU runs and tests)")
    fc_channels: int = opt(4096, "channels of fc6 and fc7 (4096 in VGG16)")
    dropout: float = opt(0.5, "dropout after fc6 and fc7")
    skip_scale: bool = opt(
        False,
        "scale the pool4/pool3 scores by 0.01/0.0001 as the reference at-once FCN-8s "
        "does (for Caffe-scale 0..255 features)",
    )
    eval_window: int = opt(
        0,
        "evaluate and predict an image larger than this many pixels a side in overlapping square windows of it, "
        "their class scores averaged (mmsegmentation's slide mode, stride 2/3 of the window): the memory of a "
        "window, whatever the image's size; 0: whole images",
    )
    FOLDERS: ClassVar[dict[str, str]] = {"camvid": "camvid", "ade20k": "ade20k_sceneparsing", "voc": "voc"}

    def default_data(self) -> str:
        return self.FOLDERS.get(self.dataset, "")

    def validate(self) -> None:
        super().validate()
        if self.width <= 0 or self.fc_channels <= 0:
            raise ConfigError(f"width={self.width} and fc_channels={self.fc_channels} must be > 0")
        if not 0 < self.scale_min <= self.scale_max:
            raise ConfigError(f"scale_min={self.scale_min}, scale_max={self.scale_max}: need 0 < min <= max")
        if (self.crop_height > 0) != (self.crop_width > 0) or min(self.crop_height, self.crop_width) < 0:
            raise ConfigError("set both crop_height and crop_width (> 0), or neither")
        if self.eval_window and self.eval_window < 32:
            raise ConfigError(f"eval_window={self.eval_window}: a window needs at least 32 pixels a side (0: off)")
        if self.backbone_weights and (self.width != 1.0 or self.fc_channels != 4096):
            raise ConfigError("--backbone-weights needs the VGG16 shape: --width 1.0 --fc-channels 4096")
        if self.dataset == "folder" and not self.data:
            raise ConfigError(
                "--dataset folder needs --data DIR holding images/<split>/, masks/<split>/ and classes.csv"
            )


FOLDER_FIELDS = ("normal_dir", "abnormal_dir", "mask_dir", "normal_test_dir", "abnormal_test_dir")


@dataclass
class SegdecConfig(TrainConfig):
    HEADLINE: ClassVar[tuple[str, ...]] = ("image_auroc", "f1_max", "pixel_auroc", "pixel_aupro")  # anomalib's
    # Tabernik et al.: plain SGD without momentum, one image per step, the segmentation net trained first and the
    # decision net then trained on top of it with the segmentation frozen; KolektorSDD images at 1408x512.
    # The learning rate and the momentum are this recipe's choice on the KolektorSDD subset, not published values:
    # with momentum 0.9 the 3-fold mean AP went from 0.980 to 0.995 (docs/results.md)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 1
    epochs: float = 30.0
    log_every: int = 20
    stage: str = opt(
        "seg+dec",
        "what to train: seg, dec (segmentation frozen), joint, or seg+dec in sequence",
        ("seg", "dec", "joint", "seg+dec"),
    )
    dec_epochs: float = opt(0.0, "seg+dec: epochs of the dec stage (0: the same as --epochs)")
    layout: str = opt(
        "kolektor",
        "on-disk layout of --data: kolektor (KolektorSDD), generic (images/ + masks/, or ok/ + defect/ + masks/), "
        "folder (anomalib's Folder: name the folders with --normal-dir etc.), ksdd2 (KolektorSDD2: train/, test/), "
        "mvtec (one MVTec AD category: train/good/, test/<defect>/, ground_truth/; folded, by image)",
        ("kolektor", "generic", "folder", "ksdd2", "mvtec"),
    )
    normal_dir: str = opt("", "layout folder: the folder (under --data) of defect-free images")
    abnormal_dir: str = opt("", "layout folder: the folder of defective images")
    mask_dir: str = opt("", "layout folder: the folder of the defective images' masks, matched by file stem")
    normal_test_dir: str = opt("", "layout folder: defect-free images for the test split only (optional)")
    abnormal_test_dir: str = opt("", "layout folder: defective images for the test split only (optional)")
    fold: int = opt(0, "cross-validation: test on this fold, train on the others (3 folds, split by item)")
    val_fraction: float = opt(
        0.2,
        "share of the training folds' items held out (by item, both classes) as validation: the best "
        "checkpoint and the operating threshold are chosen on it, and the held-out fold is the test split, "
        "scored at that threshold (0: validate on the fold itself, the paper's protocol, where the threshold "
        "would be fitted to the figures it is judged on)",
    )
    folds: int = opt(3, "number of folds (the paper's 3-fold cross-validation)")
    height: int = opt(1408, "input height in pixels (the paper's KolektorSDD size)")
    width: int = opt(512, "input width in pixels")
    channels: int = opt(1, "1 = grayscale, 3 = RGB")
    feature_channels: int = opt(1024, "channels of the 15x15 feature layer (1024 in the paper)")
    dilate: int = opt(0, "dilate masks with a square of this size before training (0: off; the follow-up paper's)")
    seg_pos_weight: float = opt(
        1.0,
        "weight of a defective cell in the segmentation loss (a hairline crack covers "
        "few cells; the follow-up paper weights the defect's pixels up)",
    )
    balanced: bool = opt(True, "each epoch: every defect-free image once and as many defective ones")
    flip: bool = opt(True, "random left-right and up-down mirroring of image and mask")
    threshold: float = opt(
        0.0,
        "operating threshold on the defect probability: a part at or above it is a defect "
        "(0: the best-F1 point of the validation split at the checkpoint used, recorded with "
        "each evaluation; never the test fold, unless --val-fraction 0)",
    )

    def default_data(self) -> str:
        return "kolektorsdd"

    def validate(self) -> None:
        super().validate()
        if self.height % 8 or self.width % 8 or self.height < 64 or self.width < 64:
            raise ConfigError(f"height={self.height}, width={self.width}: need multiples of 8, at least 64")
        if not 0 <= self.fold < self.folds or self.folds < 2:
            raise ConfigError(f"fold={self.fold}, folds={self.folds}: need folds >= 2 and 0 <= fold < folds")
        if self.layout == "folder" and not (self.normal_dir and self.abnormal_dir):
            raise ConfigError(
                "--layout folder needs --normal-dir and --abnormal-dir: the folders (under --data) of the "
                "defect-free and the defective images (and --mask-dir for their masks)"
            )
        named = [f for f in FOLDER_FIELDS if getattr(self, f)]
        if named and self.layout != "folder":
            raise ConfigError(f"--{named[0].replace('_', '-')} names a folder of --layout folder; add --layout folder")
        if self.stage == "dec" and not self.init_from:
            raise ConfigError(
                "stage=dec trains the decision net on a frozen segmentation net: pass --init-from "
                "RUN_DIR of a seg run (or use --stage seg+dec)"
            )
        if self.channels not in (1, 3):
            raise ConfigError(f"channels={self.channels} must be 1 or 3")
        if not self.seg_pos_weight > 0:
            raise ConfigError(f"seg_pos_weight={self.seg_pos_weight} must be > 0 (1: every cell alike)")


@dataclass
class SmilesCorpusConfig(TrainConfig):
    """What every molecule recipe reads: a SMILES file, its held-out part, the token vocabulary."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("data", "init_from", "val_data", "vocab_file")
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    data: str = opt(
        "", f"SMILES file: CSV with a SMILES column, or one per line (default: $TOWERLAB_DATA/{CHEMVAE_DEFAULT_FILE})"
    )
    val_data: str = opt("", "held-out SMILES file (default: a --val-fraction of --data)")
    val_fraction: float = opt(0.1, "share of --data held out for evaluation when no --val-data is given")
    max_len: int = opt(120, "longest molecule in tokens; longer ones are reported and skipped")
    representation: str = opt(
        "smiles",
        "the strings the model reads and writes: smiles, or selfies (every decoded SELFIES is a valid molecule)",
        REPRESENTATIONS,
    )
    vocab_file: str = opt("", "use this vocab.json instead of building one from --data (set when a run is reloaded)")

    def default_data(self) -> str:
        return CHEMVAE_DEFAULT_FILE

    def validate(self) -> None:
        super().validate()
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction} must be between 0 and 1")
        if self.max_len < 2:
            raise ConfigError(f"max_len={self.max_len} must be at least 2")


@dataclass
class ChemvaeConfig(SmilesCorpusConfig):
    # Gómez-Bombarelli et al.: Adam lr 1e-3, max 120 characters, KL annealed in; the post: latent 256, batch 128.
    epochs: float = 50.0
    log_every: int = 20
    latent: int = opt(256, "latent dimensions")
    encoder: str = opt(
        "conv2d",
        "conv2d: the post's 2D convs over the one-hot matrix; conv1d: Gómez-Bombarelli's",
        ("conv2d", "conv1d"),
    )
    # gru by default: on 64 ZINC molecules it reaches 0.67 token accuracy in 300 steps, the conv decoder 0.43 in 150
    decoder: str = opt(
        "gru",
        "gru: 3-layer GRU with teacher forcing (Gómez-Bombarelli); conv: the post's upsampling conv decoder",
        ("gru", "conv"),
    )
    gru_hidden: int = opt(488, "GRU decoder width (Gómez-Bombarelli: 488)")
    beta: float = opt(1.0, "weight of the KL term after annealing")
    kl_warmup_steps: int = opt(2000, "steps over which the KL weight rises linearly from 0 to beta")
    # 0.25: on ZINC (500 steps) the KL stayed at 19 nats instead of collapsing to 0.05, token accuracy 0.671 vs
    # 0.655, unique samples 0.70 vs 0.38 at the same validity (docs/results.md)
    free_bits: float = opt(
        0.25,
        "nats per latent dimension the KL term does not charge for (Kingma et al. 2016): "
        "keeps z informative instead of collapsing onto the prior; 0 = off",
    )
    properties: str = opt(
        "qed,logp", "comma-separated: qed, logp, mw, sa (computed by RDKit) or columns of the CSV; empty for none"
    )
    property_weight: float = opt(1.0, "weight of the property loss")

    def validate(self) -> None:
        super().validate()
        if self.max_len < 8 or self.max_len % 4:
            raise ConfigError(f"max_len={self.max_len} must be a multiple of 4, at least 8")
        if self.latent <= 0 or self.beta < 0 or self.kl_warmup_steps < 0 or self.free_bits < 0:
            raise ConfigError("latent must be > 0, beta, kl_warmup_steps and free_bits >= 0")


@dataclass
class ChemaaeConfig(SmilesCorpusConfig):
    # chemvae's encoder, decoder and sizes (the comparison in docs/results.md changes only the latent regulariser)
    epochs: float = 50.0
    log_every: int = 20
    latent: int = opt(256, "code dimensions")
    # conv1d by default: the conv2d encoder's dense layer (25,600 inputs at max_len 80) moved the codes from a spread
    # of 0.3 to 25 in one Adam step and to 200 in twenty, where the discriminator never learned to tell them from
    # N(0, I); conv1d's (540 inputs) keeps them at 3-7 and the discriminator separates them within 30 steps
    encoder: str = opt(
        "conv1d",
        "conv1d: Gómez-Bombarelli's 1D convs; conv2d: the post's 2D convs over the one-hot matrix",
        ("conv1d", "conv2d"),
    )
    decoder: str = opt("gru", "gru: 3-layer GRU with teacher forcing; conv: upsampling conv decoder", ("gru", "conv"))
    gru_hidden: int = opt(488, "GRU decoder width")
    discriminator_hidden: int = opt(256, "width of the discriminator's two hidden layers")
    adversarial_weight: float = opt(1.0, "weight of the generator (encoder-fools-discriminator) loss")
    scheme: str = opt(
        "joint",
        "joint: the three losses in one backward and one step (the generator's weighted "
        "adaptively); moses: as the MOSES AAE, steps alternate between the autoencoder "
        "(reconstruction per real token + generator loss) and the discriminator",
        ("joint", "moses"),
    )

    def validate(self) -> None:
        super().validate()
        if self.accum_steps != 1 or self.precision == "fp16":
            raise ConfigError("chemaae takes its own training step: accum_steps must be 1 and precision fp32 or bf16")
        if self.max_len < 8 or self.max_len % 4:
            raise ConfigError(f"max_len={self.max_len} must be a multiple of 4, at least 8")
        if self.latent <= 0 or self.discriminator_hidden <= 0 or self.adversarial_weight < 0:
            raise ConfigError("latent and discriminator_hidden must be > 0, adversarial_weight >= 0")


@dataclass
class SmilesLstmConfig(SmilesCorpusConfig):
    # GuacaMol's SMILES LSTM (Brown et al. 2019; guacamol_baselines smiles_lstm_hc): 3 LSTM layers of 1024, dropout
    # 0.2, Adam lr 1e-3, max 100 tokens. The default width here is 512 so that a prior trains on a CPU in an hour;
    # --hidden 1024 is the paper's model.
    data: str = opt(
        "",
        f"SMILES file: CSV with a SMILES column, or one per line (default: $TOWERLAB_DATA/{SMILES_LSTM_DEFAULT_FILE})",
    )
    val_fraction: float = opt(0.02, "share of --data held out for evaluation when no --val-data is given")
    max_len: int = opt(100, "longest molecule in tokens; longer ones are reported and skipped (GuacaMol: 100)")
    epochs: float = 10.0
    clip_grad: float = 5.0
    eval_every_epochs: float = 0.25
    eval_limit: int = 5000
    log_every: int = 50
    embedding: int = opt(64, "token embedding size")
    hidden: int = opt(512, "LSTM width (GuacaMol: 1024)")
    layers: int = opt(3, "stacked LSTM layers (GuacaMol: 3)")
    dropout: float = opt(0.2, "dropout between LSTM layers (GuacaMol: 0.2)")
    eval_samples: int = opt(256, "molecules sampled at each evaluation to report sample_validity (0: none)")
    randomize: bool = opt(
        False,
        "SMILES enumeration: each training molecule written from a random atom order every time it is seen "
        "(Arus-Pous et al. 2019; REINVENT's priors), so the model knows every way to write a molecule; "
        "the prior `chem reinvent --augment` needs; validation stays canonical",
    )

    def default_data(self) -> str:
        return SMILES_LSTM_DEFAULT_FILE

    def validate(self) -> None:
        super().validate()
        if min(self.embedding, self.hidden, self.layers) <= 0 or not 0 <= self.dropout < 1 or self.eval_samples < 0:
            raise ConfigError("embedding, hidden and layers must be > 0, dropout in [0, 1), eval_samples >= 0")
        if self.randomize and self.representation != "smiles":
            raise ConfigError("--randomize writes SMILES from random atom orders; it needs --representation smiles")


@cache
def fcn_config(stride: int) -> type[FcnConfig]:
    """The Config of the FCN variant with this output stride (what build_model reads as cfg.STRIDE)."""
    cls = type(f"Fcn{stride}sConfig", (FcnConfig,), {"STRIDE": stride, "__module__": __name__})
    cls.__qualname__ = cls.__name__
    return dataclass(cls)
