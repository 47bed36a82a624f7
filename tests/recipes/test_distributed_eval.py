"""Evaluation across processes (segmentation, defects, molecules): two gloo processes, each with its own (uneven)
share of the validation items, report exactly the metrics of one process that sees them all (confusion matrices
summed, scores gathered)."""

import json

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from towerlab import config
from towerlab.data import defects
from towerlab.dist import Dist
from towerlab.recipes import get

CASES = {
    "chemvae": ("smiles_csv", {"max_len": 64, "latent": 8, "batch_size": 4, "properties": "NR-AR,qed"}),
    "chemaae": ("smiles_csv", {"max_len": 64, "latent": 8, "batch_size": 4, "gru_hidden": 16}),
    "smiles-lstm": ("smiles_csv", {"max_len": 64, "hidden": 16, "embedding": 8, "batch_size": 4, "eval_samples": 0}),
    "fcn8s": ("camvid_dir", {"width": 0.125, "fc_channels": 16, "batch_size": 2}),
    # the fold holding kos06 has an odd number of parts: the processes hold different counts
    "segdec": (
        "kolektor_dir",
        {
            "height": 64,
            "width": 64,
            "feature_channels": 8,
            "batch_size": 4,
            "stage": "joint",
            "val_fraction": 0.0,  # validate on the fold itself: the one with the odd count
            "fold": [i for i, f in enumerate(defects.folds([f"kos{i:02d}" for i in range(1, 7)], 3)) if "kos06" in f][
                0
            ],
        },
    ),
}


def _metrics(name: str, data: str, dist: Dist) -> dict:
    recipe = get(name)
    cfg = config.build(recipe.Config, None, {"data": data, **CASES[name][1]})
    torch.manual_seed(0)
    data = recipe.build_data(cfg, dist)
    model = recipe.build_model(cfg, data).eval()
    val = data.val
    with torch.no_grad():
        return recipe.evaluate(model, val, dist)


def _worker(rank: int, name: str, data: str, folder: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=2)
    try:
        m = _metrics(name, data, Dist(rank=rank, world_size=2))
        tdist.barrier()
        with open(f"{folder}/rank{rank}.json", "w") as f:
            json.dump(m, f)
    finally:
        tdist.destroy_process_group()


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_processes_evaluate_like_one(name, request, tmp_path):
    data = str(request.getfixturevalue(CASES[name][0]))
    one = _metrics(name, data, Dist())
    mp.spawn(_worker, args=(name, data, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        two = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert two.keys() == one.keys()
        for k in one:
            if name == "chemaae" and k.startswith(("discriminator", "generator")):
                continue  # measured against random draws of the prior: each process draws its own
            assert two[k] == pytest.approx(one[k], rel=1e-6, abs=1e-9, nan_ok=True), k  # float32 sums in another order
