"""Surface-defect layouts: KolektorSDD (fixture and the real subset) and the generic images/ + masks/ layout."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from towerlab.data import defects
from towerlab.errors import DataError


def test_kolektor_fixture_labels_and_levels(kolektor_dir):
    items = defects.kolektor_items(kolektor_dir)
    assert list(items) == [f"kos{i:02d}" for i in range(1, 7)] and [len(v) for v in items.values()] == [2] * 5 + [3]
    images, masks, labels = defects.load(kolektor_dir, "kolektor", list(items), items, 1, (80, 32))
    assert images.shape == (13, 1, 80, 32) and masks.shape == (13, 1, 80, 32)
    assert labels.tolist() == [0.0, 1.0] * 6 + [0.0]  # kos03 has a 3-level palette label: any value > 0 is a defect
    assert masks.unique().tolist() == [0, 1]


def test_folds_are_disjoint_and_cover_every_item():
    names = [f"kos{i:02d}" for i in range(1, 51)]
    parts = defects.folds(names, 3)
    assert sorted(n for p in parts for n in p) == names
    assert all(not set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert parts == defects.folds(list(reversed(names)), 3)  # the same split whatever the listing order


def test_shrinking_a_mask_never_loses_a_thin_defect():
    mask = torch.zeros(1, 160, 64, dtype=torch.uint8)
    mask[0, 40:90, 33] = 1  # one pixel wide
    small = defects.resize_mask(mask, (20, 8))
    assert small.sum() > 0 and small.max() == 1


def test_missing_label_and_wrong_size_are_clear_errors(kolektor_dir):
    (kolektor_dir / "kos02" / "Part1_label.bmp").unlink()
    with pytest.raises(DataError, match=r"kos02/Part1.jpg has no label file Part1_label.bmp"):
        defects.kolektor_items(kolektor_dir)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(kolektor_dir / "kos02" / "Part1_label.bmp")
    items = defects.kolektor_items(kolektor_dir)
    with pytest.raises(DataError, match="Part1_label.bmp is 10x10 but its image is 32x80"):
        defects.load(kolektor_dir, "kolektor", ["kos02"], items, 1, (80, 32))


def test_generic_layout_without_mask_is_defect_free(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for stem, defect in (("a", True), ("b", False)):
        Image.fromarray(np.full((40, 48, 3), 100, np.uint8)).save(tmp_path / "images" / f"{stem}.png")
        if defect:
            mask = np.zeros((40, 48), np.uint8)
            mask[10:12, 5:30] = 255
            Image.fromarray(mask).save(tmp_path / "masks" / f"{stem}.png")
    items = defects.generic_items(tmp_path)
    images, masks, labels = defects.load(tmp_path, "generic", ["a", "b"], items, 3, (64, 64))
    assert images.shape == (2, 3, 64, 64) and labels.tolist() == [1.0, 0.0] and masks[1].sum() == 0


def test_real_kolektor_subset(shared_data):
    root = shared_data / "kolektorsdd"
    items = defects.kolektor_items(root)
    assert len(items) == 50 and sum(len(v) for v in items.values()) == 152
    images, masks, labels = defects.load(root, "kolektor", list(items), items, 1, (320, 128))
    assert int(labels.sum()) == 52 and images.dtype == torch.uint8
    assert (masks.flatten(1).amax(1) == labels).all()


def _kolektor_as_ok_defect(shared, root: Path, per_class: int = 6) -> Path:
    """Real KolektorSDD parts in anomalib's Folder layout: ok/, defect/, masks/ for every other defective part."""
    import shutil

    import numpy as np
    from PIL import Image

    ok = defect = 0
    for image in sorted((shared / "kolektorsdd").glob("kos*/Part*.jpg")):
        label = image.with_name(f"{image.stem}_label.bmp")
        bad = np.asarray(Image.open(label)).max() > 0
        if (defect if bad else ok) >= per_class:
            continue
        name = f"{image.parent.name}_{image.stem}"
        (root / ("defect" if bad else "ok")).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / ("defect" if bad else "ok") / f"{name}.jpg")
        if bad and defect % 2 == 0:
            (root / "masks").mkdir(exist_ok=True)
            shutil.copy(label, root / "masks" / f"{name}.bmp")
        defect, ok = defect + bad, ok + (not bad)
    return root


def test_ok_and_defect_folders_label_by_folder_and_train_masks_only_where_drawn(shared_data, tmp_path):
    from helpers import run_cli

    root = _kolektor_as_ok_defect(shared_data, tmp_path / "parts")
    items = defects.generic_items(root)
    images, masks, labels = defects.load(root, "generic", sorted(items), items, 1, (64, 32))
    assert labels.sum() == 6 and len(labels) == 12
    unknown = (masks == defects.UNKNOWN).flatten(1).all(1)
    assert unknown.sum() == 3 and bool((labels[unknown] == 1).all())  # defective without a mask: label only
    assert bool((masks[labels == 0] == 0).all())
    run = tmp_path / "run"
    run_cli(
        "train",
        "segdec",
        "--layout",
        "generic",
        "--data",
        str(root),
        "--stage",
        "joint",
        "--height",
        "128",
        "--width",
        "64",
        "--max-steps",
        "4",
        "--batch-size",
        "2",
        "--out",
        str(run),
        "--no-report",
    )
    rows = [json.loads(line) for line in open(run / "metrics.jsonl") if "loss" in line]
    assert rows and all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
    (root / "masks" / f"{sorted((root / 'ok').glob('*.jpg'))[0].stem}.bmp").write_bytes(b"BM")  # a mask for an ok part
    proc = run_cli(
        "train",
        "segdec",
        "--layout",
        "generic",
        "--data",
        str(root),
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "r2"),
        check=False,
    )
    assert proc.returncode == 2 and "belongs to no image" in proc.stderr and "Traceback" not in proc.stderr


def _part(path: Path, defect: bool, rng, mask_path: Path | None = None, mask_value: int = 255) -> None:
    image = rng.integers(90, 140, (64, 32)).astype(np.uint8)
    mask = np.zeros((64, 32), np.uint8)
    if defect:
        mask[20:40, 14:16] = mask_value
        image[mask > 0] = 250
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    if mask_path is not None:
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(mask_path)


def _real_parts(shared: Path, good: int, bad: int) -> tuple[list, list]:
    """The first `good` defect-free and `bad` defective KolektorSDD parts: [(image, mask array 0/255)]."""
    found: tuple[list, list] = ([], [])
    for image in sorted((shared / "kolektorsdd").glob("kos*/Part*.jpg")):
        mask = np.asarray(Image.open(image.with_name(f"{image.stem}_label.bmp")).convert("L"))
        side = found[int(mask.max() > 0)]
        if len(side) < (bad if mask.max() > 0 else good):
            side.append((image, np.where(mask > 0, 255, 0).astype(np.uint8)))
    return found


def _save(image: Path, to: Path, mask=None, mask_to: Path | None = None) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    Image.open(image).save(to)
    if mask_to is not None:
        mask_to.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(mask_to)


def _ksdd2(shared: Path, root: Path) -> Path:
    """Real KolektorSDD parts as KolektorSDD2 publishes its own: train/ and test/, <id>.png with <id>_GT.png
    (0/255), every image with its GT; train: 10000-10007 (10001, 10004, 10006 defective), test: 20000-20003
    (20001 defective)."""
    good, bad = _real_parts(shared, 8, 4)
    for split, ids, defective in (
        ("train", range(10000, 10008), {10001, 10004, 10006}),
        ("test", range(20000, 20004), {20001}),
    ):
        for i in ids:
            image, mask = (bad if i in defective else good).pop()
            _save(image, root / split / f"{i}.png", mask, root / split / f"{i}_GT.png")
    return root


def test_ksdd2_is_read_as_published_and_its_test_folder_is_the_test_split(shared_data, tmp_path):
    """issue 48: train/ is trained on (validation carved from it by item), test/ is the test split; no folds."""
    from towerlab import config
    from towerlab.dist import Dist
    from towerlab.recipes import segdec

    root = _ksdd2(shared_data, tmp_path / "ksdd2")
    found = defects.items_of(root, "ksdd2")
    assert len(found.items) == 8 and list(found.test) == [f"test/{i}" for i in range(20000, 20004)]
    cfg = config.build(
        segdec.Config, None, {"data": str(root), "layout": "ksdd2", "height": 64, "width": 64, "val_fraction": 0.34}
    )
    data = segdec.build_data(cfg, Dist())
    assert data.test.num_items == 4 and data.train.num_items + data.val.num_items == 8
    assert data.test.tensors[2].tolist() == [0.0, 1.0, 0.0, 0.0]  # test/'s own labels, in id order
    (root / "train" / "10003_GT.png").unlink()
    with pytest.raises(DataError, match="10003.png has no mask 10003_GT.png"):
        defects.items_of(root, "ksdd2")


def _mvtec(shared: Path, category: Path) -> Path:
    """Real KolektorSDD parts as MVTec AD publishes a category: train/good/000.png.., test/good/, test/crack/ and
    test/scratch/ with ground_truth/<defect>/<stem>_mask.png."""
    good, bad = _real_parts(shared, 8, 4)
    for i in range(5):
        _save(good.pop()[0], category / "train" / "good" / f"{i:03d}.png")
    for i in range(3):
        _save(good.pop()[0], category / "test" / "good" / f"{i:03d}.png")
    for defect in ("crack", "scratch"):
        for i in range(2):
            image, mask = bad.pop()
            _save(
                image,
                category / "test" / defect / f"{i:03d}.png",
                mask,
                category / "ground_truth" / defect / f"{i:03d}_mask.png",
            )
    return category


def test_mvtec_category_is_read_as_published_and_folded_by_image(shared_data, tmp_path):
    """issue 48: --layout mvtec: one category's train/good, test/good and test/<defect> (masks from ground_truth/),
    folded over the whole category because MVTec keeps its defects in test/; one line for a category root, a
    defective image without its mask, or a missing train/good."""
    from towerlab import config
    from towerlab.dist import Dist
    from towerlab.recipes import segdec

    from helpers import run_cli

    root = _mvtec(shared_data, tmp_path / "mvtec" / "parts")
    found = defects.items_of(root, "mvtec")
    assert found.test is None and len(found.items) == 12
    assert found.items["test/crack/001"] == [
        (root / "test" / "crack" / "001.png", root / "ground_truth" / "crack" / "001_mask.png", 1)
    ]
    assert found.items["train/good/004"][0][1:] == (None, 0) and found.items["test/good/002"][0][1:] == (None, 0)
    names = sorted(found.items)
    images, masks, labels = defects.load(root, "mvtec", names, found.items, 1, (128, 64))
    assert labels.tolist() == [1.0] * 2 + [0.0] * 3 + [1.0] * 2 + [0.0] * 5  # crack, good, scratch, train/good
    assert (masks.flatten(1).amax(1) == labels).all()  # every real defect survives the shrink (max-pooled)
    cfg = config.build(
        segdec.Config, None, {"data": str(root), "layout": "mvtec", "height": 64, "width": 64, "fold": 1}
    )
    data = segdec.build_data(cfg, Dist())  # fold 1 of 3 is four of train/good; the other two folds hold the defects
    assert data.test.num_items == 4 and data.train.num_items + data.val.num_items == 8
    run = tmp_path / "run"
    run_cli(
        "train",
        "segdec",
        "--layout",
        "mvtec",
        "--data",
        str(root),
        "--stage",
        "joint",
        "--height",
        "128",
        "--width",
        "64",
        "--feature-channels",
        "16",
        "--fold",
        "1",
        "--max-steps",
        "2",
        "--out",
        str(run),
        "--no-report",
    )
    assert (run / "final_metrics.json").is_file()
    proc = run_cli(
        "train",
        "segdec",
        "--layout",
        "mvtec",
        "--data",
        str(root.parent),
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "r2"),
        check=False,
    )
    assert proc.returncode == 2 and f"pass one category, e.g. --data {root}" in proc.stderr
    assert "Traceback" not in proc.stderr
    (root / "ground_truth" / "scratch" / "000_mask.png").unlink()
    with pytest.raises(DataError, match="scratch/000.png has no mask .*000_mask.png"):
        defects.items_of(root, "mvtec")


def test_folder_layout_takes_anomalibs_names_and_optional_test_folders(tmp_path):
    """--layout folder --normal-dir good --abnormal-dir bad --mask-dir gt (anomalib's Folder); with test folders
    named, they are the test split; without, the folds."""
    rng = np.random.default_rng(6)
    root = tmp_path / "parts"
    for i in range(6):
        _part(root / "good" / f"g{i}.png", False, rng)
        _part(root / "bad" / f"b{i}.png", True, rng, root / "gt" / f"b{i}.png")
    names = {"normal_dir": "good", "abnormal_dir": "bad", "mask_dir": "gt"}
    folded = defects.items_of(root, "folder", names)
    assert folded.test is None and len(folded.items) == 12
    assert folded.items["b3"][0][1] == root / "gt" / "b3.png" and folded.items["g3"][0][1:] == (None, 0)
    _part(root / "good_test" / "t0.png", False, rng)
    _part(root / "bad_test" / "t1.png", True, rng, root / "gt" / "t1.png")
    with pytest.raises(DataError, match="gt/t1.png belongs to no image"):  # a mask of no image: a naming mistake
        defects.items_of(root, "folder", names)
    tested = defects.items_of(
        root, "folder", {**names, "normal_test_dir": "good_test", "abnormal_test_dir": "bad_test"}
    )
    assert tested.test == {
        "good_test/t0": [(root / "good_test" / "t0.png", None, 0)],
        "bad_test/t1": [(root / "bad_test" / "t1.png", root / "gt" / "t1.png", 1)],
    }
    with pytest.raises(DataError, match="no images in .*/nothing, the folder of defective images"):
        defects.items_of(root, "folder", {**names, "abnormal_dir": "nothing"})


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--layout", "folder", "--normal-dir", "good"], "--layout folder needs --normal-dir and --abnormal-dir"),
        (["--normal-dir", "good"], "--normal-dir names a folder of --layout folder; add --layout folder"),
    ],
)
def test_folder_names_without_their_layout_are_one_line(tmp_path, flags, fragment):
    from helpers import run_cli

    proc = run_cli("train", "segdec", "--data", str(tmp_path), *flags, check=False)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_a_folder_layout_run_trains_and_tests_on_its_test_folders(tmp_path):
    from helpers import run_cli

    rng = np.random.default_rng(7)
    root = tmp_path / "parts"
    for i in range(4):
        _part(root / "good" / f"g{i}.png", False, rng)
        _part(root / "bad" / f"b{i}.png", True, rng, root / "gt" / f"b{i}.png")
    for i in range(2):
        _part(root / "good_test" / f"u{i}.png", False, rng)
        _part(root / "bad_test" / f"v{i}.png", True, rng, root / "gt" / f"v{i}.png")
    run = tmp_path / "run"
    run_cli(
        "train", "segdec", "--data", str(root), "--layout", "folder", "--normal-dir", "good", "--abnormal-dir",
        "bad", "--mask-dir", "gt", "--normal-test-dir", "good_test", "--abnormal-test-dir", "bad_test",
        "--stage", "joint", "--height", "64", "--width", "64", "--feature-channels", "16", "--batch-size", "2",
        "--max-steps", "2", "--val-fraction", "0.5", "--out", str(run), "--no-report",
    )  # fmt: skip
    final = json.loads((run / "final_metrics.json").read_text())
    assert {"ap", "fp@operating", "operating_threshold"} <= set(final["best"]["test"])
