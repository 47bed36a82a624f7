"""Segmentation layouts (CamVid, VOC, ADE20K) on fixtures and on the real data; padded batches; paired augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image

from towerlab.data import segmentation as seg
from towerlab.data.augment import paired_scale_crop_flip
from towerlab.data.loader import PaddedLoader, pad_stack
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
    items = ([torch.full((3, 4 + i, 5), i, dtype=torch.uint8) for i in range(8)],
             [torch.full((4 + i, 5), i, dtype=torch.uint8) for i in range(8)])
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
