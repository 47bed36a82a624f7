"""SegDecNet: stages, frozen segmentation in the dec stage, the seg+dec sequence, metrics, real KolektorSDD."""

import json
import math

import pytest
import torch

from towerlab import checkpoint, config
from towerlab.data.loader import BalancedLoader
from towerlab.dist import Dist
from towerlab.engine import fit, fit_stages
from towerlab.errors import ConfigError
from towerlab.recipes import get, segdec

from helpers import run_cli

SMALL = {"height": 80, "width": 64, "feature_channels": 16, "batch_size": 4, "log_every": 1}


def _cfg(data, **kw):
    return config.build(segdec.Config, None, {"data": str(data), **SMALL, **kw})


@pytest.mark.parametrize("stage", ["seg", "dec", "joint"])
def test_forward_backward_trains_only_its_part(stage):
    torch.manual_seed(0)
    model = segdec.SegDecNet(1, 16, stage).train()
    x, mask = torch.randn(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.95).float()
    mask_logits, decision = model(x)
    assert mask_logits.shape == (2, 1, 8, 8) and decision.shape == (2,)
    loss, logs = segdec.loss(model, (x, mask, torch.tensor([1.0, 0.0])))
    loss.backward()
    assert math.isfinite(loss.item())
    seg_grads = [p.grad for p in model.seg.parameters()]
    dec_grads = [p.grad for p in model.dec.parameters()] + [model.fc.weight.grad]
    assert all(g is not None for g in seg_grads) == (stage != "dec")
    assert all(g is not None for g in dec_grads) == (stage != "seg")
    assert all(g is None for g in (seg_grads if stage == "dec" else dec_grads if stage == "seg" else []))


def test_seg_pos_weight_weights_only_the_defective_cells():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, 0, 8:10, 16:40] = 1  # a thin crack: 3 of the 64 cells of the 1/8 grid
    label = torch.tensor([1.0, 0.0])
    plain = segdec.SegDecNet(1, 16, "seg").eval()
    weighted = segdec.SegDecNet(1, 16, "seg", pos_weight=10.0).eval()
    weighted.load_state_dict(plain.state_dict())
    logits = plain(x)[0].detach()
    cells = torch.nn.functional.adaptive_max_pool2d(mask, logits.shape[-2:])
    pos, neg = torch.nn.functional.softplus(-logits), torch.nn.functional.softplus(logits)  # -log p, -log (1-p)
    n = cells.numel()
    assert segdec.loss(plain, (x, mask, label))[0].item() == pytest.approx(
        float((cells * pos + (1 - cells) * neg).sum() / n), rel=1e-5
    )
    assert segdec.loss(weighted, (x, mask, label))[0].item() == pytest.approx(
        float((10 * cells * pos + (1 - cells) * neg).sum() / n), rel=1e-5
    )
    with pytest.raises(ConfigError, match="seg_pos_weight=0"):
        config.build(segdec.Config, None, {"seg_pos_weight": 0})


def test_dec_stage_leaves_the_segmentation_net_unchanged(kolektor_dir, tmp_path):
    fit(get("segdec"), _cfg(kolektor_dir, stage="seg", max_steps=3), out=tmp_path / "seg")
    before = segdec.SegDecNet(1, 16)
    before.load_state_dict(__import__("towerlab.checkpoint", fromlist=["x"]).run_weights(tmp_path / "seg"))
    fit(
        get("segdec"),
        _cfg(kolektor_dir, stage="dec", max_steps=4, lr=0.1, init_from=str(tmp_path / "seg")),
        out=tmp_path / "dec",
    )
    from towerlab.checkpoint import run_weights

    after = run_weights(tmp_path / "dec", "last")
    seg_keys = [k for k in after if k.startswith(("seg.", "mask."))]  # weights and batch-norm statistics
    assert seg_keys and all(torch.equal(after[k], before.state_dict()[k]) for k in seg_keys)
    assert any(not torch.equal(after[k], before.state_dict()[k]) for k in after if k.startswith(("dec.", "fc.")))


def test_dec_stage_needs_a_segmentation_run(kolektor_dir):
    with pytest.raises(ConfigError, match="pass --init-from RUN_DIR of a seg run"):
        _cfg(kolektor_dir, stage="dec")


def test_seg_then_dec_in_one_command(kolektor_dir, tmp_path):
    # evaluated every step at a high lr, the seg stage's best (step 1) and last (step 2) weights differ
    m = fit_stages(
        get("segdec"), _cfg(kolektor_dir, epochs=1, dec_epochs=2, eval_every_steps=1, lr=0.1), out=tmp_path / "run"
    )
    seg_cfg = (tmp_path / "run" / "seg" / "config.yaml").read_text()
    dec_cfg = (tmp_path / "run" / "dec" / "config.yaml").read_text()
    assert "stage: seg\n" in seg_cfg and "stage: dec\n" in dec_cfg and f"init_from: {tmp_path}/run/seg" in dec_cfg
    assert m["run_dir"] == str(tmp_path / "run" / "dec") and 0 <= m["ap"] <= 1
    # the dec stage starts from the seg stage's LAST weights (with --val-fraction 0 its best ones would be chosen on
    # the test fold); frozen, they are the dec run's segmentation exactly
    assert "init_checkpoint: last\n" in dec_cfg
    seg_last = checkpoint.run_weights(tmp_path / "run" / "seg", "last")
    seg_best = checkpoint.run_weights(tmp_path / "run" / "seg", "best")
    dec_last = checkpoint.run_weights(tmp_path / "run" / "dec", "last")
    frozen = [k for k in seg_last if k.startswith(("seg.", "mask.")) and seg_last[k].is_floating_point()]
    assert frozen and all(torch.equal(seg_last[k], dec_last[k]) for k in frozen)
    assert not all(torch.equal(seg_best[k], dec_last[k]) for k in frozen)  # so it is not the best that was taken


def test_balanced_loader_draws_both_classes_equally():
    positive = torch.tensor([True, False, False, False, False, False, True, False])
    loader = BalancedLoader((torch.arange(8),), 4, Dist(), positive=positive, seed=1)
    assert len(loader) == 3  # 6 negatives and 6 draws of the 2 positives per epoch, batches of 4
    seen = torch.cat([b[0] for b in loader])
    assert positive[seen].sum() == 6 and len(set(seen[~positive[seen]].tolist())) == 6


def test_short_run_on_real_kolektor_gives_finite_ap(shared_data, tmp_path):
    cfg = _cfg(
        shared_data / "kolektorsdd",
        stage="joint",
        height=160,
        width=64,
        max_steps=12,
        batch_size=8,
        eval_every_steps=0,
        eval_every_epochs=0,
    )
    m = fit(get("segdec"), cfg, out=tmp_path / "run")
    assert 0 < m["ap"] <= 1 and 0 <= m["auc"] <= 1 and math.isfinite(m["dice"])
    assert m["fp@0.5"] + m["fn@0.5"] <= 51  # the evaluated fold holds about a third of the 152 parts
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(x["train/loss"]) for x in lines if "train/loss" in x)


def test_cli_predict_prints_probability_and_writes_the_overlay(kolektor_dir, tmp_path):
    from PIL import Image

    run_cli(
        "train",
        "segdec",
        "--data",
        str(kolektor_dir),
        "--stage",
        "joint",
        "--max-steps",
        "2",
        "--height",
        "80",
        "--width",
        "64",
        "--feature-channels",
        "8",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    part = kolektor_dir / "kos01" / "Part1.jpg"
    result = json.loads(
        run_cli(
            "predict", str(tmp_path / "run"), str(part), "--json", "--out-dir", str(tmp_path / "p")
        ).stdout.splitlines()[-1]
    )
    assert result["class"] in ("ok", "defect") and 0 <= result["probability"] <= 1
    with Image.open(result["overlay_png"]) as im:
        assert im.size == (32, 80) and im.mode == "RGB"
    # issue 43: predict on a folder wrote <name>_defect.png into the folder it reads (overwriting a user's own file,
    # and grading its own outputs on the next run); the outputs now go beside the CSV, and no file of the user's
    # is ever overwritten
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, name in enumerate(("Part1.jpg", "Part2.jpg")):
        (folder / name).write_bytes((kolektor_dir / "kos01" / f"Part{i}.jpg").read_bytes())
    Image.new("RGB", (8, 8), "blue").save(folder / "Part1_defect.png")  # the user's own file, named like an output
    mine = (folder / "Part1_defect.png").read_bytes()
    for _ in range(2):  # a rerun replaces its own outputs and reads none of them
        proc = run_cli("predict", str(tmp_path / "run"), str(folder))
        assert "3 images predicted, 0 skipped" in proc.stdout, proc.stdout + proc.stderr  # the user's PNG too
    assert (folder / "Part1_defect.png").read_bytes() == mine and sorted(p.name for p in folder.iterdir()) == [
        "Part1.jpg",
        "Part1_defect.png",
        "Part2.jpg",
    ]
    assert (tmp_path / "run" / "predict-parts" / "Part2_defect.png").is_file()
    refused = run_cli("predict", str(tmp_path / "run"), str(folder), "--out-dir", str(folder / "o"), check=False)
    assert refused.returncode == 2 and "the outputs would become inputs" in refused.stderr
    single = run_cli("predict", str(tmp_path / "run"), str(folder / "Part1.jpg"), check=False)
    assert single.returncode == 2 and "Part1_defect.png exists and was not written by towerlab" in single.stderr
    assert (folder / "Part1_defect.png").read_bytes() == mine


def test_the_operating_threshold_is_the_validation_best_f1_point_and_travels_to_predict_export_and_serve(
    kolektor_dir, tmp_path
):
    from towerlab import infer
    from towerlab.export import export
    from towerlab.runs import RunRecord
    from towerlab.serve.onnx_scorer import OnnxScorer

    run = tmp_path / "run"
    fit(get("segdec"), _cfg(kolektor_dir, stage="joint", max_steps=6, eval_every_steps=3), out=run)
    loaded = infer.load(run, "last")
    recorded = RunRecord.load(run).validation_at(6)["best_f1_threshold"]
    assert loaded.cfg.threshold == pytest.approx(recorded) and 0 < loaded.cfg.threshold < 1
    image = sorted(kolektor_dir.glob("kos*/Part*.jpg"))[0]
    row = infer.predict(run, [str(image)], "last", str(tmp_path / "out"))[0]
    assert row["threshold"] == loaded.cfg.threshold
    assert row["class"] == ("defect" if row["probability"] >= row["threshold"] else "ok")
    set_by_hand = infer.load(run, "last", threshold=0.9).cfg.threshold
    assert set_by_hand == 0.9
    done = export(run, "onnx", tmp_path / "m.onnx")
    assert OnnxScorer(done["path"]).threshold == pytest.approx(loaded.cfg.threshold)


def test_validation_is_carved_from_the_training_folds_by_item_with_both_classes():
    """issue 48: the threshold is chosen on items the model was not trained on and the report is not judged on."""
    from towerlab.data.defects import hold_out_items
    from towerlab.errors import ConfigError

    owners = [f"kos{i:02d}" for i in range(20) for _ in range(4)]
    labels = torch.tensor([float(i < 8 and part == 1) for i in range(20) for part in range(4)])
    keep, held = hold_out_items(owners, labels, 0.25)
    kept_items, held_items = {owners[i] for i in keep}, {owners[i] for i in held}
    assert not kept_items & held_items and len(held_items) == 5  # 2 of 8 defective items, 3 of 12 others
    assert sum(labels[held] > 0) == 2 and sum(labels[held] == 0) > 0
    assert torch.equal(hold_out_items(owners, labels, 0.25)[1], held)  # the same items every run and seed
    with pytest.raises(ConfigError, match="no validation split with both defective and defect-free"):
        hold_out_items(owners, labels, 0.01)


def test_the_test_fold_is_judged_at_the_threshold_validation_chose(kolektor_dir, tmp_path):
    """The held-out fold is the test split, scored at the carved validation's best-F1 point; what predict and serve
    decide at (infer.load) is that validation's threshold, never one fitted on the fold."""
    from towerlab import infer
    from towerlab.runs import RunRecord

    run = tmp_path / "run"
    m = fit(
        get("segdec"), _cfg(kolektor_dir, stage="joint", max_steps=4, eval_every_steps=2, val_fraction=0.5), out=run
    )
    best = m["best"]
    validation = RunRecord.load(run).validation_at(best["step"])
    test = best["test"]
    assert test["operating_threshold"] == validation["best_f1_threshold"]
    assert {"fp@operating", "fn@operating", "f1@operating", "accuracy@operating", "ap"} <= set(test)
    anomalib = {"image_auroc", "f1_max", "pixel_auroc", "pixel_aupro"}  # anomalib's figures, beside today's
    assert anomalib <= set(test) and anomalib <= set(m) and test["image_auroc"] == test["auc"]
    assert all(0 <= test[k] <= 1 for k in anomalib)
    assert 0 < validation["best_f1_threshold"] < 1
    assert infer.load(run, "best").cfg.threshold == pytest.approx(validation["best_f1_threshold"])
    # 6 items of 2-3 images: the fold is 2 items, validation 2 of the other 4, training the last 2
    data = segdec.build_data(_cfg(kolektor_dir, val_fraction=0.5), Dist())
    sizes = [data.train.num_items, data.val.num_items, data.test.num_items]
    assert sum(sizes) == 13 and all(n >= 4 for n in sizes)


def test_val_fraction_0_is_the_papers_protocol_with_no_test_split(kolektor_dir, tmp_path):
    m = fit(get("segdec"), _cfg(kolektor_dir, stage="joint", max_steps=2, val_fraction=0.0), out=tmp_path / "run")
    assert "test" not in m["best"] and 0 <= m["ap"] <= 1


def test_a_run_in_stages_sigkilled_mid_stage_continues_with_auto_resume_to_the_same_weights(kolektor_dir, tmp_path):
    """--auto-resume on a seg+dec run: the run folder holds no checkpoint (its stages do), so the continuation is
    found stage by stage: the cut-off seg stage resumed from its checkpoint, then dec; the weights end bitwise equal
    to a run never stopped; run again, both finished stages are taken as they are."""
    import os
    import signal
    import subprocess
    import sys
    import time

    flags = ["--data", str(kolektor_dir), "--height", "64", "--width", "64", "--feature-channels", "8"]
    flags += ["--batch-size", "2", "--epochs", "12", "--dec-epochs", "2", "--ckpt-every-steps", "3"]
    flags += ["--eval-every-epochs", "0", "--val-fraction", "0", "--no-report"]

    def cmd(out):
        return [sys.executable, "-m", "towerlab", "train", "segdec", *flags, "--out", str(out), "--auto-resume"]

    subprocess.run(cmd(tmp_path / "straight"), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd(tmp_path / "cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer, deadline = tmp_path / "cut" / "seg" / "checkpoints" / "last.json", time.time() + 300
    while not (pointer.is_file() and json.loads(pointer.read_text())["step"] >= 6) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "seg" / "final_metrics.json").is_file()  # killed within the seg stage
    out = subprocess.run(cmd(tmp_path / "cut"), check=True, capture_output=True, text=True, timeout=600)
    for stage in ("seg", "dec"):
        a = checkpoint.run_weights(tmp_path / "straight" / stage, "last")
        b = checkpoint.run_weights(tmp_path / "cut" / stage, "last")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (stage, out.stderr[-2000:])
    again = run_cli(*cmd(tmp_path / "cut")[3:])
    assert again.stdout.count("nothing to do") + again.stderr.count("nothing to do") == 2  # both stages, as they are
