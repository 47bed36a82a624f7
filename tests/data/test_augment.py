import torch

from towerlab.data import augment


def test_random_crop_is_a_window_of_each_image():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = augment.random_crop(x, 24)
    assert out.shape == (16, 3, 24, 24)
    for i in range(16):
        found = any(torch.equal(out[i], x[i, :, r : r + 24, c : c + 24]) for r in range(9) for c in range(9))
        assert found


def test_flip_mirrors_some_and_keeps_others():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    out = augment.random_flip(x)
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_per_image_standardization_matches_tensorflow_definition():
    x = torch.rand(4, 3, 24, 24) * 255
    out = augment.per_image_standardization(x)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out.std(dim=(1, 2, 3), correction=0), torch.ones(4), atol=1e-4)
    flat = torch.full((1, 3, 24, 24), 7.0)  # zero variance: std floored at 1/sqrt(N), no division by zero
    assert torch.equal(augment.per_image_standardization(flat), torch.zeros_like(flat))


def test_contrast_keeps_channel_means_and_brightness_shifts_them():
    x = torch.rand(8, 3, 24, 24) * 255
    c = augment.random_contrast(x, 0.2, 1.8)
    assert torch.allclose(c.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-3)
    b = augment.random_brightness(x, 63)
    shift = (b - x).flatten(1)
    assert torch.allclose(shift.min(1).values, shift.max(1).values, atol=1e-4)  # one offset per image
    assert shift.abs().max() <= 63


def test_random_shift_moves_each_image_by_at_most_n_pixels_and_keeps_its_size():
    from towerlab.data.augment import random_shift

    torch.manual_seed(0)
    x = torch.zeros(64, 1, 12, 10)
    x[:, :, 5, 4] = 1.0  # one bright pixel, far enough from the border that no shift loses it
    y = random_shift(x, 2)
    assert y.shape == x.shape and (y.sum((1, 2, 3)) == 1).all()
    rows, cols = y[:, 0].nonzero()[:, 1], y[:, 0].nonzero()[:, 2]
    assert (rows - 5).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10, "independent offsets per image"
    assert torch.equal(random_shift(x, 0), x)
