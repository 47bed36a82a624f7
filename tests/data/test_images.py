"""data/images.py: PNGs written by predict (overlays, label maps) and `data export`."""

import numpy as np
import torch
from PIL import Image

from towerlab.data.images import read_image, write_image, write_label


def test_a_link_planted_at_an_output_png_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    image = torch.arange(3 * 4 * 5, dtype=torch.uint8).reshape(3, 4, 5)
    label = torch.tensor([[0, 1], [2, 1]])
    for name in ("overlay.png", "label.png"):
        (tmp_path / name).symlink_to(victim)
    write_image(image, tmp_path / "overlay.png")
    write_label(label, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], tmp_path / "label.png")
    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "overlay.png").is_symlink() and torch.equal(read_image(tmp_path / "overlay.png", 3), image)
    with Image.open(tmp_path / "label.png") as im:
        assert im.mode == "P" and torch.equal(torch.as_tensor(np.asarray(im)).long(), label)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label.png", "overlay.png", "victim.txt"]  # no temp left
