import torch

from towerlab.data.loader import TensorLoader
from towerlab.dist import Dist


def _items(n):
    return (torch.arange(n), torch.arange(n) * 10)


def test_rank_slices_concatenate_to_the_global_batch():
    data = _items(40)
    one = [b[0] for b in TensorLoader(data, 8, Dist(), train=True, seed=3)]
    ranks = [[b[0] for b in TensorLoader(data, 8, Dist(rank=r, world_size=2), train=True, seed=3)] for r in (0, 1)]
    assert len(one) == 5
    for i, full in enumerate(one):
        assert torch.equal(torch.cat([ranks[0][i], ranks[1][i]]), full)


def test_order_depends_on_seed_and_epoch_only():
    loader = TensorLoader(_items(30), 10, Dist(), train=True, seed=1)
    loader.set_epoch(2)
    a = torch.cat([b[0] for b in loader])
    loader.set_epoch(2, start=1)  # resume mid-epoch: the remaining batches of the same order
    b = torch.cat([b[0] for b in loader])
    assert torch.equal(a[10:], b)
    loader.set_epoch(3)
    assert not torch.equal(a, torch.cat([b[0] for b in loader]))
    assert sorted(a.tolist()) == list(range(30))


def test_eval_shards_cover_every_item_once():
    seen = []
    for r in range(3):
        for x, _ in TensorLoader(_items(25), 8, Dist(rank=r, world_size=3), train=False):
            seen += x.tolist()
    assert sorted(seen) == list(range(25))


def test_training_drops_the_partial_batch():
    assert len(TensorLoader(_items(25), 8, Dist(), train=True)) == 3
    assert len(TensorLoader(_items(25), 8, Dist(), train=False)) == 4
