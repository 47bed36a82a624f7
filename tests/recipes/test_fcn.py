"""FCN-32s/16s/8s: exact output size, bilinear upsampling, torchvision VGG16 weights, staged training, real data."""

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from towerlab import checkpoint, config
from towerlab.data.images import read_label
from towerlab.data.segmentation import CAMVID_CLASSES, CAMVID_PALETTE
from towerlab.engine import fit
from towerlab.errors import CheckpointError, ConfigError
from towerlab.recipes import fcn, get

from helpers import run_cli

SMALL = {"width": 0.125, "fc_channels": 32}


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_output_matches_input_size_for_odd_sizes(stride):
    model = fcn.FCN(5, stride, **{"width": 0.125, "fc": 16}).eval()
    for h, w in ((1, 1), (17, 33), (45, 31), (97, 64)):
        assert model(torch.randn(2, 3, h, w)).shape == (2, 5, h, w)


def test_a_large_image_is_scored_in_overlapping_windows_averaged():
    """--eval-window: windows every 2/3 of their size, the last flush with the edge; an image no larger than the
    window is scored whole (the same numbers); a larger one is the mean over the windows covering each pixel."""
    assert fcn.starts(96, 64) == [0, 32] and fcn.starts(160, 64) == [0, 42, 84, 96] and fcn.starts(50, 64) == [0]
    torch.manual_seed(0)
    model = fcn.FCN(5, 8, width=0.125, fc=16).eval()
    for p in model.parameters():  # (the score layers start at zero, as the paper's: give every layer a say)
        p.data.normal_(0, 0.1)
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        whole = model(x)
        model.window = 160
        assert torch.equal(fcn.scores(model, x), whole)
        model.window = 64
        slid = fcn.scores(model, x)
        first, second, last = model(x[..., :64, :64]), model(x[..., :64, 42:106]), model(x[..., 32:, 96:])
    assert slid.shape == whole.shape and not torch.allclose(slid, whole)
    assert torch.allclose(slid[..., :32, :42], first[..., :32, :42])  # rows 0-31, cols 0-41: the first window alone
    assert torch.allclose(slid[..., :32, 42:64], (first[..., :32, 42:] + second[..., :32, :22]) / 2)  # two windows
    assert torch.allclose(slid[..., 64:, 148:], last[..., 32:, 52:])  # the bottom-right window alone


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_upsampling_starts_as_exact_bilinear_interpolation(factor):
    layer = fcn.upsample(3, factor, learn=False)
    x = torch.randn(1, 3, 6, 7)
    up = layer(x)[..., factor // 2 : factor // 2 + 6 * factor, factor // 2 : factor // 2 + 7 * factor]
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    inner = slice(factor, -factor)  # away from the border, where interpolate clamps and the layer pads with 0
    assert torch.allclose(up[..., inner, inner], ref[..., inner, inner], atol=1e-5)
    k = torch.arange(2 * factor, dtype=torch.float64)
    tri = 1 - (k - (factor - 0.5)).abs() / factor
    assert torch.equal(layer.weight[1, 1].double(), torch.outer(tri, tri)) and layer.weight[0, 1].abs().sum() == 0
    assert not layer.weight.requires_grad


def test_the_fixed_upsampling_is_the_full_transposed_convolution_per_channel():
    """The fixed layers compute channel by channel (groups=C); the same output as the full layer, same state dict."""
    torch.manual_seed(0)
    for factor in (8, 16, 32):
        layer = fcn.upsample(150, factor, learn=False)
        x = torch.randn(2, 150, 5, 6)
        assert torch.allclose(layer(x), F.conv_transpose2d(x, layer.weight, None, factor), atol=1e-5)
        assert layer.state_dict()["weight"].shape == (150, 150, 2 * factor, 2 * factor)
    model = fcn.FCN(150, 8, width=0.125, fc=16)
    assert type(model.upscore8) is fcn.FixedUpsample and type(model.upscore2) is torch.nn.ConvTranspose2d


def torchvision_vgg16_state_dict() -> OrderedDict:
    """The key names and shapes of torchvision.models.vgg16().state_dict(), with random values."""
    sd, cin, i = OrderedDict(), 3, 0
    for v in fcn.VGG16:
        if v == "M":
            i += 1
            continue
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = torch.randn(v, cin, 3, 3), torch.randn(v)
        cin, i = v, i + 2
    for j, (cout, cin) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        sd[f"classifier.{j}.weight"], sd[f"classifier.{j}.bias"] = torch.randn(cout, cin) * 0.01, torch.randn(cout)
    return sd


def test_torchvision_vgg16_weights_map_onto_every_backbone_tensor(tmp_path):
    sd = torchvision_vgg16_state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    cfg = config.build(get("fcn8s").Config, None, {"backbone_weights": str(path), "dataset": "camvid"})
    model = fcn.build_model(cfg)
    own = model.state_dict()
    for key, value in sd.items():
        if key.startswith("features."):
            assert torch.equal(own[key], value), key
    assert torch.equal(own["fc6.weight"], sd["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(own["fc7.weight"].flatten(1), sd["classifier.3.weight"])
    assert torch.equal(own["fc6.bias"], sd["classifier.0.bias"])
    # the torchvision layer list is reproduced index for index (only conv1_1's padding and ceil pools differ)
    assert [type(m) for m in model.features] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.MaxPool2d] + [
        type(m) for m in model.features
    ][5:]
    assert len(model.features) == 31


def test_weights_files_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "x": nn.ReLU()}, path)  # a module: needs unpickling code
    with pytest.raises(CheckpointError, match="cannot be read as a state dict"):
        checkpoint.read_state_dict(path)
    with pytest.raises(ConfigError, match="needs the VGG16 shape"):
        config.build(get("fcn32s").Config, None, {"backbone_weights": str(path), "width": 0.5})


def _cfg(name, data, **kw):
    fields = {
        "data": str(data),
        "batch_size": 2,
        "max_steps": 4,
        "log_every": 1,
        "lr": 1e-3,
        "optimizer": "adam",
        "crop_height": 24,
        "crop_width": 32,
        **SMALL,
        **kw,
    }
    return config.build(get(name).Config, None, fields)


def test_staged_training_copies_the_coarser_net(camvid_dir, tmp_path):
    m32 = fit(get("fcn32s"), _cfg("fcn32s", camvid_dir), out=tmp_path / "r32")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "r32" / "tb"))
    events.Reload()
    assert "val/examples" in events.Tags()["images"]  # prediction overlays at every evaluation
    cfg16 = _cfg("fcn16s", camvid_dir, init_from=m32["run_dir"], max_steps=1, lr=1e-12)
    model = fcn.build_model(cfg16)
    copied, fresh = checkpoint.init_from(model, tmp_path / "r32")
    assert "score_fr.weight" in copied and "features.0.weight" in copied
    assert set(fresh) == {"upscore2.weight", "score_pool4.weight", "score_pool4.bias", "upscore16.weight"}
    best = checkpoint.run_weights(tmp_path / "r32")
    assert torch.equal(model.state_dict()["fc6.weight"], best["fc6.weight"])
    with pytest.raises(CheckpointError, match="no weights of .* match"):
        checkpoint.init_from(nn.Linear(2, 2), tmp_path / "r32")


def test_short_run_on_real_camvid_lowers_the_loss(shared_data, tmp_path):
    cfg = _cfg(
        "fcn8s",
        shared_data / "camvid",
        batch_size=8,
        max_steps=24,
        lr=2e-3,
        crop_height=96,
        crop_width=128,
        log_every=4,
        eval_every_steps=0,
        eval_every_epochs=0,
        scale_min=1.0,
        scale_max=1.0,
    )
    m = fit(get("fcn8s"), cfg, out=tmp_path / "run")
    losses = [
        r["train/loss"]
        for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
        if "train/loss" in r
    ]
    assert sum(losses[-2:]) < sum(losses[:2]) * 0.9
    assert 0 < m["mean_iou"] <= 1 and math.isfinite(m["fw_iou"]) and m["pixel_accuracy"] > 0.3
    assert set(k for k in m if k.startswith("iou/")) <= {f"iou/{c}" for c in fcn.seg.CAMVID_CLASSES}


def test_real_ade20k_run_reports_the_scene_parsing_score(shared_data, tmp_path):
    cfg = _cfg(
        "fcn32s",
        shared_data / "ade20k_sceneparsing",
        dataset="ade20k",
        train_split="validation",
        val_split="validation",
        crop_height=64,
        crop_width=64,
        max_steps=2,
        eval_window=256,  # ADE20K's images are larger: evaluated in windows
    )
    m = fit(get("fcn32s"), cfg, out=tmp_path / "run")
    assert m["score"] == pytest.approx((m["pixel_accuracy"] + m["mean_iou"]) / 2)
    assert "iou/other" not in m and math.isfinite(m["mean_iou"])


def test_cli_predict_writes_label_and_overlay_pngs(camvid_dir, tmp_path):
    from PIL import Image

    run_cli(
        "train",
        "fcn16s",
        "--data",
        str(camvid_dir),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--width",
        "0.125",
        "--fc-channels",
        "16",
        "--out",
        str(tmp_path / "run"),
    )
    image = camvid_dir / "val" / "0001TP_000001.png"
    out = run_cli("predict", str(tmp_path / "run"), str(image), "--out-dir", str(tmp_path / "pred"), "--json").stdout
    result = json.loads(out.splitlines()[-1])
    with Image.open(result["overlay_png"]) as im:
        assert im.size == (41, 31) and im.mode == "RGB"
    # the label map holds class indices (rescorable, trainable on) and shows the classes' colours
    label = read_label(result["label_png"])
    assert tuple(label.shape) == (31, 41) and int(label.max()) < len(CAMVID_CLASSES)
    with Image.open(result["label_png"]) as im:
        colours = np.asarray(im.convert("RGB"))
    assert (colours == np.array(CAMVID_PALETTE, dtype=np.uint8)[label.numpy()]).all()
    assert abs(sum(result["classes"].values()) - 1) < 0.05 or len(result["classes"]) == 5


def test_bad_label_ends_training_with_one_line_naming_the_file(camvid_dir, tmp_path):
    from PIL import Image

    path = camvid_dir / "trainannot" / "0001TP_000003.png"
    with Image.open(path) as im:
        arr = __import__("numpy").asarray(im).copy()
    arr[0, 0] = 77
    Image.fromarray(arr).save(path)
    proc = run_cli(
        "train",
        "fcn32s",
        "--data",
        str(camvid_dir),
        "--max-steps",
        "1",
        "--width",
        "0.125",
        "--out",
        str(tmp_path / "run"),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("towerlab: error: label ")
    assert "0001TP_000003.png has value 77" in proc.stderr and "Traceback" not in proc.stderr


def test_val_fraction_is_refused_where_the_recipe_has_its_own_validation_split(camvid_dir, tmp_path):
    from towerlab.errors import ConfigError

    with pytest.raises(ConfigError, match="does not take --val-fraction"):
        fit(get("fcn32s"), _cfg("fcn32s", camvid_dir, val_fraction=0.1), out=tmp_path / "run")


def test_predicting_a_folder_writes_label_maps_and_skips_what_does_not_decode(camvid_dir, tmp_path):
    """A segmentation run has no fixed input size: each file is read at its own (no input_shape asked)."""
    import csv

    from towerlab import infer

    fit(get("fcn32s"), _cfg("fcn32s", camvid_dir, max_steps=1), out=tmp_path / "run")
    (camvid_dir / "val" / "broken.png").write_bytes(b"not a png")
    done = infer.predict_folder(tmp_path / "run", camvid_dir / "val", tmp_path / "p.csv", out_dir=str(tmp_path / "o"))
    assert done["rows"] == 3 and done["skipped"] == 1
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 3 and all((tmp_path / "o").glob("*_label.png"))
