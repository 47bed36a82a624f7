"""Segmentation layouts (CamVid, VOC, ADE20K) on fixtures and on the real data; padded batches; paired augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from towerlab.data import segmentation as seg
from towerlab.data.augment import item_scale_crop_flip, paired_scale_crop_flip
from towerlab.data.loader import PaddedLoader, pad_stack
from towerlab.data.stream import StreamReader, TensorItems
from towerlab.dist import Dist
from towerlab.errors import DataError


def test_camvid_fixture_maps_void_to_ignore(camvid_dir):
    images, labels = seg.load_split("camvid", camvid_dir, "train")
    assert len(images) == 6 and images[0].shape == (3, 30, 41) and labels[1].shape == (31, 41)
    raw = np.asarray(Image.open(camvid_dir / "trainannot" / "0001TP_000000.png"))
    assert ((labels[0].numpy() == seg.IGNORE) == (raw == 11)).all()
    assert set(np.unique(labels[0].numpy())) <= set(range(11)) | {seg.IGNORE}


def test_voc_palette_labels_read_as_indices(voc_dir):
    images, labels = seg.load_split("voc", voc_dir, "train")
    assert len(images) == 2 and (labels[0][0] == seg.IGNORE).all()
    assert labels[0][1:].max() <= 20 and images[0].shape == (3, 37, 50)


def test_value_outside_the_classes_names_the_file(camvid_dir):
    path = camvid_dir / "valannot" / "0001TP_000001.png"
    bad = np.asarray(Image.open(path)).copy()
    bad[3, 3] = 40
    Image.fromarray(bad).save(path)
    with pytest.raises(DataError, match=r"0001TP_000001.png has value 40, outside the camvid classes"):
        seg.load_split("camvid", camvid_dir, "val")


def test_colour_label_and_size_mismatch_are_clear_errors(camvid_dir):
    path = camvid_dir / "trainannot" / "0001TP_000002.png"
    Image.fromarray(np.zeros((32, 41, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="is a RGB image; labels must hold class indices"):
        seg.load_split("camvid", camvid_dir, "train")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(path)
    with pytest.raises(DataError, match="must match its image pixel for pixel"):
        seg.load_split("camvid", camvid_dir, "train")
    path.unlink()
    with pytest.raises(DataError, match="0001TP_000002.png not found"):
        seg.load_split("camvid", camvid_dir, "train")
    from helpers import hostile_pictures

    path.write_bytes(hostile_pictures()["bomb"])  # issue 43: a label that is a decompression bomb
    with pytest.raises(DataError, match="0001TP_000002.png: a 13000x13000 image"):
        seg.load_split("camvid", camvid_dir, "train")


def test_unknown_split_is_a_clear_error(camvid_dir):
    with pytest.raises(DataError, match="no camvid images for split 'trainval'"):
        seg.pairs("camvid", camvid_dir, "trainval")


def test_real_camvid(shared_data):
    images, labels = seg.load_split("camvid", shared_data / "camvid", "train")
    assert len(images) == 92 and images[0].shape == (3, 180, 240)
    values = torch.unique(torch.stack(labels))
    assert values.max() == seg.IGNORE and set(values[:-1].tolist()) <= set(range(11))


def test_real_ade20k(shared_data):
    root = shared_data / "ade20k_sceneparsing"
    s = seg.spec("ade20k", root)
    assert len(s.classes) == 151 and s.classes[:3] == ["other", "wall", "building"]
    images, labels = seg.load_split("ade20k", root, "validation")
    assert len(images) == 3 and all(im.shape[1:] == lb.shape for im, lb in zip(images, labels))
    raw = np.asarray(Image.open(root / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"))
    assert ((labels[0].numpy() == seg.IGNORE) == (raw == 0)).all()


def test_pad_stack_pads_bottom_right():
    a, b = torch.ones(2, 3), torch.full((3, 2), 2)
    out = pad_stack([a.long(), b.long()], 255)
    assert out.shape == (2, 3, 3)
    assert (out[0, :2, :3] == 1).all() and (out[0, 2] == 255).all()
    assert (out[1, :, :2] == 2).all() and (out[1, :, 2] == 255).all()


def test_padded_loader_ranks_split_every_global_batch():
    items = (
        [torch.full((3, 4 + i, 5), i, dtype=torch.uint8) for i in range(8)],
        [torch.full((4 + i, 5), i, dtype=torch.uint8) for i in range(8)],
    )
    seen = []
    for rank in range(2):
        loader = PaddedLoader(items, 4, Dist(rank=rank, world_size=2), train=True, pad=(0, 255), seed=3)
        loader.set_epoch(1)
        seen.append([y[:, 0, 0].tolist() for _, y in loader])
    one = PaddedLoader(items, 4, Dist(), train=True, pad=(0, 255), seed=3)
    one.set_epoch(1)
    whole = [y[:, 0, 0].tolist() for _, y in one]
    assert [a + b for a, b in zip(*seen)] == whole
    assert sorted(v for batch in whole for v in batch) == list(range(8))


def test_crops_made_where_items_are_read_are_the_same_on_either_loader_any_ranks_and_after_a_resume(camvid_dir):
    """issue 44: with a crop size each pair is scaled, cropped and mirrored where it is read (the stream's worker
    processes), with numbers drawn for its place in the epoch: every batch is crop-sized whatever the images' own
    sizes (never padded to the largest), the in-memory and the streamed loader give the same crops, two ranks
    split each global batch of one, and a loader started at batch 1 (a resume) gives the batches that followed."""
    items = seg.PairItems("camvid", camvid_dir, "train")
    held = tuple(map(list, zip(*(items[i] for i in range(len(items))))))
    held[0][1] = held[0][1][:, :25, :33]  # sizes that differ, as real photographs' do
    held[1][1] = held[1][1][:25, :33]
    crop = item_scale_crop_flip((16, 20), (0.5, 2.0), True, seg.IGNORE)
    options = {"train": True, "pad": (0, seg.IGNORE), "seed": 5, "item_transform": crop}

    def batches(loader, epoch=2, start=0):
        loader.set_epoch(epoch, start)
        return [tuple(t.clone() for t in b) for b in loader]

    memory = batches(PaddedLoader(held, 2, Dist(), **options))
    assert len(memory) == 3 and all(x.shape == (2, 3, 16, 20) and y.shape == (2, 16, 20) for x, y in memory)
    stream = StreamReader(TensorItems(held), workers=2)
    streamed = batches(PaddedLoader(None, 2, Dist(), reader=stream, **options))
    assert all(torch.equal(a, b) for m, s in zip(memory, streamed) for a, b in zip(m, s))
    halves = [batches(PaddedLoader(held, 2, Dist(rank=r, world_size=2), **options)) for r in range(2)]
    for whole, a, b in zip(memory, *halves):
        assert all(torch.equal(w, torch.cat([p, q])) for w, p, q in zip(whole, a, b))
    assert all(torch.equal(a, b) for m, r in zip(memory[1:], batches(PaddedLoader(held, 2, Dist(), **options), 2, 1))
               for a, b in zip(m, r))  # fmt: skip
    other = batches(PaddedLoader(held, 2, Dist(), **options), epoch=3)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(memory, other))  # another epoch, other crops


def test_paired_augmentation_identity_and_alignment():
    torch.manual_seed(0)
    y = torch.randint(0, 5, (3, 40, 60))
    x = y.float()[:, None]  # the image is its own label
    same_x, same_y = paired_scale_crop_flip(x, y, (40, 60), (1.0, 1.0), False, 255)
    assert torch.allclose(same_x, x, atol=1e-4) and torch.equal(same_y, y)
    blocks = torch.kron(torch.randint(0, 5, (3, 10, 15)), torch.ones(4, 4, dtype=torch.long))
    for _ in range(5):
        ax, ay = paired_scale_crop_flip(blocks.float()[:, None], blocks, (32, 48), (0.5, 2.0), True, 255)
        labelled = ay != 255
        assert set(ay.unique().tolist()) <= set(range(5)) | {255}
        # bilinear image and nearest label agree almost everywhere (they differ only at block edges)
        agree = (ax[:, 0][labelled] - ay[labelled].float()).abs() < 0.5
        assert agree.float().mean() > 0.8


def _camvid_as_folder(shared: Path, root: Path, colour: bool, n: int = 6) -> Path:
    """Real CamVid frames and labels rewritten in the images/ + masks/ + classes.csv layout: colour masks (the
    SegNet palette, void as an ignore colour) or class values x 10 (void as 255, ignored)."""
    import numpy as np
    from PIL import Image

    from towerlab.data.segmentation import CAMVID_CLASSES, CAMVID_PALETTE

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for p in sorted((shared / "camvid" / split).glob("*.png"))[:n]:
            im = Image.open(p).resize((120, 90))
            im.save(root / "images" / split / f"{p.stem}.jpg", quality=95)
            lab = np.asarray(Image.open(shared / "camvid" / f"{split}annot" / p.name).resize((120, 90), Image.NEAREST))
            if colour:
                table = np.array([*CAMVID_PALETTE, (0, 0, 0)], dtype=np.uint8)
                Image.fromarray(table[np.minimum(lab, 11)]).save(root / "masks" / split / f"{p.stem}.png")
            else:
                Image.fromarray(np.where(lab == 11, 255, lab * 10).astype(np.uint8)).save(
                    root / "masks" / split / f"{p.stem}.png"
                )
    rows = ["name,r,g,b" if colour else "name,value"]
    rows += [
        f"{c},{','.join(map(str, CAMVID_PALETTE[i]))}" if colour else f"{c},{10 * i}"
        for i, c in enumerate(CAMVID_CLASSES)
    ]
    rows.append("ignore,0,0,0" if colour else "ignore,255")
    (root / "classes.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("colour", [True, False])
def test_a_folder_of_images_and_masks_trains_fcn(shared_data, tmp_path, colour):
    from helpers import run_cli

    data = _camvid_as_folder(shared_data, tmp_path / "seg", colour)
    run = tmp_path / "run"
    run_cli(
        "train",
        "fcn32s",
        "--dataset",
        "folder",
        "--data",
        str(data),
        "--width",
        "0.125",
        "--fc-channels",
        "16",
        "--batch-size",
        "2",
        "--max-steps",
        "3",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--out",
        str(run),
        "--no-report",
    )
    metrics = json.loads((run / "final_metrics.json").read_text())
    assert 0 <= metrics["mean_iou"] <= 1 and metrics["pixel_accuracy"] > 0
    from towerlab.data.segmentation import load_split

    images, labels = load_split("folder", data, "val")
    assert len(images) == 6 and all(lb.max() <= 10 or lb.max() == 255 for lb in labels)
    assert sum(int((lb == 255).sum()) for lb in labels) > 0  # CamVid's void pixels, ignored
    ev = json.loads(run_cli("eval", str(run)).stdout)
    assert "iou/Road" in ev  # the class names of classes.csv


def test_a_bad_segmentation_folder_is_one_line(shared_data, tmp_path):
    from helpers import run_cli

    data = _camvid_as_folder(shared_data, tmp_path / "seg", colour=False, n=2)
    args = [
        "train",
        "fcn32s",
        "--dataset",
        "folder",
        "--data",
        str(data),
        "--width",
        "0.125",
        "--fc-channels",
        "16",
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "r"),
    ]
    mask = sorted((data / "masks" / "train").glob("*.png"))[0]
    from PIL import Image

    Image.new("L", (120, 90), 77).save(mask)  # 77 is no class value
    proc = run_cli(*args, check=False)
    assert (
        proc.returncode == 2 and "value 77, which classes.csv does not list" in proc.stderr and str(mask) in proc.stderr
    )
    from helpers import hostile_pictures

    mask.write_bytes(hostile_pictures()["bomb"])  # issue 43: a mask claiming 13,000 x 13,000 pixels was a traceback
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "a 13000x13000 image" in proc.stderr
    assert str(mask) in proc.stderr
    mask.unlink()
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and "has no mask" in proc.stderr and "Traceback" not in proc.stderr
