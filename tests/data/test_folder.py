"""Your own images in class folders (ImageFolder's layout), as a user brings them: real scans (scikit-learn's
handwritten digits) written as PNG and JPEG, grey and colour, of several sizes; trained, evaluated and predicted
through the CLI; every bad folder one line and exit 2."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import hostile_pictures, run_cli

NAMES = {0: "zero", 1: "one", 2: "two"}


def write_folder(root: Path, per_class: int = 40, val: int = 10, flat: bool = False) -> Path:
    """digits 0, 1, 2 as image files: even ones grey PNG at 8x8, odd ones colour JPEG at 24x24."""
    from sklearn.datasets import load_digits

    d = load_digits()
    seen = {c: 0 for c in NAMES}
    for i, c in enumerate(d.target):
        if c not in NAMES or seen[c] >= per_class + val:
            continue
        k = seen[c]
        seen[c] += 1
        split = "" if flat else ("train" if k < per_class else "val")
        folder = root / split / NAMES[c]
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8))
        if k % 2:
            im.resize((24, 24)).convert("RGB").save(folder / f"{i}.jpg", quality=95)
        else:
            im.save(folder / f"{i}.png")
    return root


def test_a_class_folder_trains_evaluates_and_predicts_by_class_name(tmp_path):
    data = write_folder(tmp_path / "digits")
    run = tmp_path / "run"
    run_cli(
        "train",
        "mnist",
        "--data",
        str(data),
        "--image-size",
        "12x12",
        "--hidden",
        "64",
        "--epochs",
        "12",
        "--batch-size",
        "30",
        "--lr",
        "3e-3",
        "--out",
        str(run),
        "--no-report",
    )
    record = (run / "config.yaml").read_text()
    assert "classes: one,two,zero" in record and "image_size: 12x12" in record  # sorted, as ImageFolder
    ev = json.loads(run_cli("eval", str(run)).stdout)
    assert ev["accuracy"] > 0.8  # 30 validation images of three digits
    (data / "val" / "one" / "broken.jpg").write_text("not a JPEG")
    (data / "val" / "one" / "odd.tif").write_bytes(hostile_pictures()["tiff_typeerror"])  # issue 43: no CSV at all
    (data / "val" / "one" / "bomb.png").write_bytes(hostile_pictures()["bomb"])
    proc = run_cli("predict", str(run), str(data / "val"), "--checkpoint", "best", "--out", str(tmp_path / "p.csv"))
    assert "30 images predicted, 3 skipped" in proc.stdout and "broken.jpg" in proc.stderr
    assert "odd.tif: cannot be decoded (TypeError" in proc.stderr and "bomb.png: a 13000x13000 image" in proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows) and len(rows) == 30
    assert set(rows[0]) == {"file", "class", "probability", "p_one", "p_two", "p_zero"}
    right = sum(r["class"] == Path(r["file"]).parts[0] for r in rows)
    assert right / len(rows) == pytest.approx(ev["accuracy"])  # the pixels eval saw: decoded and resized the same way
    first = sorted((data / "train" / "two").glob("*.jpg"))[0]  # 24x24 colour: refused unless resized
    assert "pass --resize" in run_cli("predict", str(run), str(first), check=False).stderr
    assert run_cli("predict", str(run), str(first), "--resize").stdout.split(": ")[1].split()[0] in NAMES.values()


def test_a_flat_class_folder_validates_on_a_held_out_part(tmp_path):
    data = write_folder(tmp_path / "flat", flat=True)
    proc = run_cli("train", "mlp", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r0"), check=False)
    assert proc.returncode == 2 and "--val-fraction" in proc.stderr and "Traceback" not in proc.stderr
    run_cli(
        "train",
        "mlp",
        "--data",
        str(data),
        "--val-fraction",
        "0.2",
        "--epochs",
        "3",
        "--units",
        "32",
        "--batch-size",
        "16",
        "--out",
        str(tmp_path / "r"),
        "--no-report",
    )
    rows = [json.loads(line) for line in open(tmp_path / "r" / "metrics.jsonl") if "val/accuracy" in line]
    assert rows and rows[-1]["val/accuracy"] > 0.5


@pytest.mark.parametrize(
    "damage, said",
    [
        ("empty", "holds no images"),
        ("stray", "is not among the training classes"),
        ("corrupt", "cannot be decoded"),
        ("no_val", "no validation folder"),
        ("typeerror", "cannot be decoded (TypeError"),  # issue 43: a decoder's unexpected exception was a traceback
        ("bomb", "a 13000x13000 image: more than the 40,000,000 pixels towerlab decodes"),  # 1.5 GB once decoded
    ],
)
def test_a_bad_folder_is_one_line_naming_it(tmp_path, damage, said):
    data = write_folder(tmp_path / "d", per_class=4, val=2)
    if damage == "empty":
        (data / "train" / "three").mkdir()
    elif damage == "stray":
        (data / "val" / "nine").mkdir()
        Image.new("L", (8, 8)).save(data / "val" / "nine" / "x.png")
    elif damage == "corrupt":
        (data / "train" / "one" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    elif damage in ("typeerror", "bomb"):
        name = {"typeerror": "tiff_typeerror", "bomb": "bomb"}[damage]
        (data / "train" / "one" / f"{damage}.tif").write_bytes(hostile_pictures()[name])
    else:
        for f in (data / "val").rglob("*"):
            f.unlink() if f.is_file() else None
        for f in sorted((data / "val").rglob("*"), reverse=True):
            f.rmdir()
        (data / "val").rmdir()
    proc = run_cli("train", "mnist", "--data", str(data), "--max-steps", "1", "--out", str(tmp_path / "r"), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and said in lines[-1] and "Traceback" not in proc.stderr, proc.stderr


def test_a_file_name_is_never_a_formula_in_the_predictions_csv(tmp_path):
    """Issue 43: a cell starting with = + - @ is a formula to Excel (OWASP: CSV injection); it gets a leading '."""
    data = write_folder(tmp_path / "digits", per_class=8, val=2)
    run = tmp_path / "run"
    run_cli(
        "train", "mnist", "--data", str(data), "--max-steps", "2", "--batch-size", "8", "--out", str(run), "--no-report"
    )
    flat = tmp_path / "incoming"
    flat.mkdir()
    source = sorted((data / "val" / "one").glob("*.png"))[0]
    for name in ("=HYPERLINK(1).png", "+1.png", "@x.png", "plain.png"):
        (flat / name).write_bytes(source.read_bytes())
    run_cli("predict", str(run), str(flat), "--out", str(tmp_path / "p.csv"))
    files = [r["file"] for r in csv.DictReader(open(tmp_path / "p.csv"))]
    assert sorted(files) == ["'+1.png", "'=HYPERLINK(1).png", "'@x.png", "plain.png"]
