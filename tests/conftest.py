"""Fixtures: tiny datasets written in the real on-disk formats, and the real datasets in ../shared/data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Under pytest-xdist (`make test`) each worker, and every process its tests start, takes its share of the cores:
# torch otherwise runs as many threads as there are cores in every worker, and the workers' threads spin against
# each other (two workers of two threads on two cores doubled the suite's CPU time, 39.9 against 20.1 minutes).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import (  # noqa: E402, F401
    REAL_SMILES,
    REPO,
    cifar_records,
    missing,
    run_cli,
    write_cifar_python_batch,
    write_idx,
    zinc_file,
)


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A 64-train / 32-test MNIST folder in IDX format: train files gzipped, test files plain."""
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 64, True), ("t10k", 32, False)):
        suffix = ".gz" if gz else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz)
    return tmp_path


@pytest.fixture
def cifar_bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(cifar_records(48, 1))
    (folder / "data_batch_2.bin").write_bytes(cifar_records(16, 2))
    (folder / "test_batch.bin").write_bytes(cifar_records(20, 3))
    return tmp_path


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on loopback for the session (the service's tests, a search's shared study)."""
    from serve.serve_helpers import Postgres, pg_bin  # tests/serve/serve_helpers.py (bench/serve.py uses it too)

    bindir = pg_bin()
    if bindir is None:
        missing(
            "PostgreSQL server binaries not found (apt-get install postgresql); .ci/run installs them",
            "TOWERLAB_REQUIRE_POSTGRES",
        )
    pg = Postgres(bindir)
    yield pg
    pg.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets (../shared/data or $TOWERLAB_DATA). Skips, saying so, when absent;
    fails instead when TOWERLAB_REQUIRE_DATA=1 (CI), so a missing data folder never passes silently."""
    root = Path(os.environ.get("TOWERLAB_DATA") or REPO.parent / "shared" / "data")
    if not (root / "SOURCES.md").is_file() and not (root / "mnist").is_dir():
        missing(
            f"real datasets not found at {root}: set TOWERLAB_DATA to the shared data folder", "TOWERLAB_REQUIRE_DATA"
        )
    return root


def _write_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array.astype(np.uint8))
    if palette is None:
        Image.fromarray(array).save(path)
        return
    im = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())  # indices, not colours
    im.putpalette(palette)
    im.save(path)


def blocky_pair(rng: np.random.Generator, h: int, w: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image whose colour follows its label map of 4x4 blocks (so a model can learn it)."""
    label = np.kron(rng.integers(0, classes, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4), dtype=int))[:h, :w]
    colours = rng.integers(0, 256, (classes, 3))
    return colours[label].astype(np.uint8), label


@pytest.fixture
def camvid_dir(tmp_path: Path) -> Path:
    """CamVid in the SegNet layout: 6 train and 3 val pairs of odd sizes, labels 0..10 and 11 = void."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for i in range(n):
            image, label = blocky_pair(rng, 30 + i, 41, 12)
            _write_png(tmp_path / split / f"0001TP_{i:06d}.png", image)
            _write_png(tmp_path / f"{split}annot" / f"0001TP_{i:06d}.png", label)
    return tmp_path


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    """PASCAL VOC 2012 layout: JPEGs, palette PNG labels with 255 borders, ImageSets lists."""
    from towerlab.data.segmentation import bit_palette

    base = tmp_path / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(1)
    palette = [v for rgb in bit_palette(256) for v in rgb]
    for split, stems in (("train", ["2007_000032", "2007_000039"]), ("val", ["2007_000033"])):
        for stem in stems:
            image, label = blocky_pair(rng, 37, 50, 21)
            label[0, :] = 255  # VOC's object borders
            from PIL import Image

            (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(base / "JPEGImages" / f"{stem}.jpg")
            _write_png(base / "SegmentationClass" / f"{stem}.png", label, palette)
        lst = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        lst.parent.mkdir(parents=True, exist_ok=True)
        lst.write_text("\n".join(stems) + "\n")
    return tmp_path


@pytest.fixture
def kolektor_dir(tmp_path: Path) -> Path:
    """KolektorSDD layout: 6 items with two parts each (three in kos06); palette BMP labels (indices 0/1, one with 3
    levels)
    for defective parts, all-zero grayscale BMPs for the rest."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for item in range(1, 7):
        folder = tmp_path / f"kos{item:02d}"
        folder.mkdir()
        for part in range(3 if item == 6 else 2):  # kos06 has a third, defect-free part: folds of odd size
            image = rng.integers(90, 140, (80, 32)).astype(np.uint8)
            label = np.zeros((80, 32), np.uint8)
            if part == 1:
                label[30:50, 14:16] = 1 if item != 3 else 2  # a thin crack
                image[label > 0] = 250
            Image.fromarray(image).save(folder / f"Part{part}.jpg", quality=95)
            lab = Image.fromarray(label)
            if label.any():
                lab = Image.frombytes("P", (32, 80), label.tobytes())
                lab.putpalette([0, 0, 0, 255, 255, 255, 128, 128, 128])
            lab.save(folder / f"Part{part}_label.bmp")
    return tmp_path


@pytest.fixture
def smiles_csv(tmp_path: Path) -> Path:
    """A Tox21-style CSV: SMILES, two 0/1 assay columns with blanks, one row RDKit cannot parse."""
    rows = ["smiles,NR-AR,SR-p53"]
    for i, s in enumerate(REAL_SMILES * 3):
        rows.append(f"{s},{i % 2},{'' if i % 3 == 0 else (i // 2) % 2}")
    rows.append("C1CC,0,1")  # an unclosed ring: invalid, reported and skipped
    path = tmp_path / "mols.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(autouse=True, scope="session")
def _no_reports():
    """report.html at the end of train and search costs 1-3 s a run: off for the suite (every process it starts
    inherits this), on where tests/test_report.py tests it."""
    os.environ["TOWERLAB_REPORT"] = "0"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """RDKit properties computed by chemvae are cached under $XDG_CACHE_HOME: keep the tests' cache their own."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


SHARED_BUILDS = ("lstm_run", "every_kind")  # session fixtures that train real models (~20 s and ~60 s)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where torch sees a CUDA device (the lent GPU: pytest -m gpu) and skip elsewhere.
    Under pytest-xdist (`make test`: --dist loadgroup) a module's tests stay on one worker, so its module fixtures
    are built once, and the modules that need one of the trained session fixtures share one worker, so those are
    trained once instead of once per worker."""
    import torch

    shared = {item.path for item in items if any(name in item.fixturenames for name in SHARED_BUILDS)}
    for item in items:
        group = "trained-generators" if item.path in shared else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lstm_run(shared_data, tmp_path_factory) -> Path:
    """smiles-lstm trained 300 steps on 100 real ZINC molecules (~20 s, once per session): it has nearly learned
    them by heart, so most of what it writes is valid (0.89 measured), which the hill-climb and MCTS tests need."""
    from towerlab import config
    from towerlab.engine import fit
    from towerlab.recipes import get

    tmp = tmp_path_factory.mktemp("lstm")
    cfg = config.build(
        get("smiles-lstm").Config,
        None,
        {
            "data": str(zinc_file(shared_data, tmp, 100)),
            "val_fraction": 0.1,
            "max_len": 80,
            "hidden": 256,
            "embedding": 32,
            "layers": 2,
            "dropout": 0.0,
            "batch_size": 32,
            "lr": 5e-3,
            "max_steps": 300,
            "eval_every_steps": 300,
            "eval_samples": 32,
        },
    )
    fit(get("smiles-lstm"), cfg, out=tmp / "run")
    return tmp / "run"


@pytest.fixture(scope="session")
def every_kind(shared_data, lstm_run, tmp_path_factory):
    """Short real runs of every kind the issue names, their reports written: a digits classifier, FCN-8s on CamVid,
    SegDecNet on KolektorSDD, chemvae on ZINC, the smiles-lstm with a hill-climb and a REINVENT search beside it, a
    GA search, an ensemble and two jobs (the last three through the CLI, which writes their reports at the end)."""
    from towerlab import config, report
    from towerlab.engine import fit
    from towerlab.recipes import get

    root = tmp_path_factory.mktemp("every") / "runs"
    (root / "not-a-run").mkdir(parents=True)
    env = {"TOWERLAB_REPORT": "1"}
    run_cli("train", "digits", "--epochs", "2", "--out", str(root / "digits"), env=env)  # its report: unasked
    runs = {
        "fcn8s": (
            "fcn8s",
            {
                "data": str(shared_data / "camvid"),
                "width": 0.125,
                "fc_channels": 16,
                "batch_size": 4,
                "max_steps": 3,
                "crop_height": 96,
                "crop_width": 128,
                "eval_limit": 3,
                "eval_every_steps": 3,
            },
        ),
        "segdec": (
            "segdec",
            {
                "data": str(shared_data / "kolektorsdd"),
                "stage": "joint",
                "height": 160,
                "width": 64,
                "feature_channels": 16,
                "batch_size": 8,
                "max_steps": 3,
                "eval_every_steps": 3,
            },
        ),
        "chemvae": (
            "chemvae",
            {
                "data": str(zinc_file(shared_data, root.parent, 300)),
                "max_len": 80,
                "latent": 16,
                "gru_hidden": 64,
                "batch_size": 16,
                "max_steps": 10,
                "eval_every_steps": 10,
            },
        ),
    }
    for name, (recipe, fields) in runs.items():
        fit(get(recipe), config.build(get(recipe).Config, None, fields), out=root / name)
    shutil.copytree(lstm_run, root / "smiles-lstm")
    run_cli(
        "chem",
        "hillclimb",
        str(root / "smiles-lstm"),
        "--rounds",
        "2",
        "--samples",
        "64",
        "--keep",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
    )
    run_cli(
        "chem", "reinvent", str(root / "smiles-lstm"), "--steps", "2", "--batch-size", "16"
    )  # the report shows both
    for name in [*runs, "smiles-lstm"]:
        report.write(root / name)
    space = root.parent / "space.yaml"
    space.write_text("lr: {logfloat: [0.001, 0.1]}\nunits: {choices: [16, 64]}\n")
    run_cli(
        "search",
        "mlp",
        "--space",
        str(space),
        "--population",
        "3",
        "--generations",
        "2",
        "--workers",
        "2",
        "--out",
        str(root / "search"),
        "--set",
        "dataset=digits",
        "--set",
        "epochs=1",
        env=env,
    )
    run_cli(
        "ensemble",
        "digits",
        "--members",
        "2",
        "--workers",
        "2",
        "--out",
        str(root / "ensemble"),
        "--set",
        "epochs=1",
        env=env,
    )
    jobs = root.parent / "jobs.yaml"
    jobs.write_text(
        "jobs:\n  - {name: small, recipe: mlp, overrides: {dataset: digits, epochs: 1, units: 16}}\n"
        "  - {name: wide, recipe: mlp, overrides: {dataset: digits, epochs: 1, units: 128}}\n"
    )
    run_cli("jobs", "run", str(jobs), "--workers", "2", "--out", str(root / "jobs"), env=env)
    return root
