import torch

from towerlab.recipes import cifar10


def test_same_pool_matches_tensorflow_padding():
    x = torch.randn(2, 4, 24, 24)
    out = cifar10.SamePool()(x)
    assert out.shape == (2, 4, 12, 12)
    # TF SAME for 24 -> 12 with k=3, s=2 pads one row/column at the bottom/right only
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), value=float("-inf"))
    assert torch.equal(out[..., 3, 5], padded[..., 6:9, 10:13].amax(dim=(-2, -1)))


def test_lrn_matches_tf_nn_lrn_formula():
    x = torch.randn(1, 64, 3, 3)
    out = cifar10._lrn()(x)
    # tf.nn.lrn: x / (bias + alpha * sum_{c-4..c+4} x^2) ** beta, bias 1, alpha 0.001/9, beta 0.75
    sq = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, 4, 4))
    window = torch.stack([sq[:, c : c + 9].sum(1) for c in range(64)], 1)
    ref = x / (1.0 + 0.001 / 9.0 * window) ** 0.75
    assert torch.allclose(out, ref, atol=1e-6)


def test_architecture_and_weight_decay_targets():
    model = cifar10.TutorialCNN()
    assert model(torch.randn(2, 3, 24, 24)).shape == (2, 10)
    assert model.local3.in_features == 2304 and model.local3.out_features == 384 and model.local4.out_features == 192
    names = dict(model.named_parameters())
    assert all(n in names for n in cifar10.decay_params(model))
    assert model.conv2.bias.eq(0.1).all() and model.conv1.bias.eq(0).all()
    assert model.conv1.weight.abs().max() <= 2 * 5e-2  # truncated at two standard deviations
