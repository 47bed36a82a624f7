"""SegDecNet as the service's model: with image_dir set, each graded row gets its defect heat map drawn over it."""

import numpy as np
from PIL import Image

import dbcases
from helpers import run_cli
from serve_helpers import run_serve, write_config


def test_segdec_rows_get_their_heat_maps(tmp_path, shared_data):
    run = tmp_path / "segdec"
    run_cli(
        "train",
        "segdec",
        "--stage",
        "joint",
        "--height",
        "128",
        "--width",
        "64",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--eval-limit",
        "4",
        "--out",
        str(run),
    )
    # real KolektorSDD parts, scaled to the model's 128x64 and stored as text rows
    parts = sorted((shared_data / "kolektorsdd" / "kos01").glob("Part*.jpg"))[:3]
    rows = []
    for i, p in enumerate(parts, start=1):
        pixels = np.asarray(Image.open(p).convert("L").resize((64, 128), Image.BILINEAR))
        rows.append((i, 0, ",".join(map(str, pixels.ravel()))))
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db = dbcases.Db(url)
    db.insert(rows)
    cfg = write_config(
        tmp_path / "serve.yaml",
        url,
        run,
        payload={"kind": "text", "column": "vals", "height": 128, "width": 64},
        normalize={"kind": "fixed", "offset": 0, "scale": 255},
    )
    proc = run_serve(cfg, "--once")
    assert proc.returncode == 0, proc.stderr
    out = db.outcomes()
    assert [o["row_key"] for o in out] == [1, 2, 3] and {o["status"] for o in out} == {"ok"}
    for key in (1, 2, 3):
        image = np.asarray(Image.open(tmp_path / "images" / "line1" / f"{key}.png"))
        heat = np.asarray(Image.open(tmp_path / "images" / "line1" / f"{key}_defect.png"))
        assert image.shape == (128, 64) and heat.shape == (128, 64, 3)
        # the overlay is the image where the model sees nothing and redder where it sees a defect
        assert (heat[..., 0].astype(int) >= heat[..., 1]).all() and np.abs(heat[..., 1] - heat[..., 2]).max() <= 1
