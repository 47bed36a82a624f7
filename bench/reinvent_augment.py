"""Augmented Memory against plain experience replay, from a prior trained on canonical SMILES only and from one
trained with --randomize (SMILES enumeration), on QED (issue 49).

    TOWERLAB_DATA=../shared/data python bench/reinvent_augment.py [--steps 12] [--molecules 2000]

Each prior: `towerlab train smiles-lstm` on the first --molecules of ZINC (JT-VAE's valid.txt), two LSTM layers of
256, --prior-steps steps. Each agent: `chem reinvent`'s defaults but for batch 32, lr 1e-3 and sigma 60 (a short
run must move), --steps steps, --augment 0 or 2. Then 256 molecules drawn from the agent's last weights (seed 123)
and from the prior: the share that are molecules (RDKit) and their mean QED. Prints a table, writes
bench/out/reinvent_augment/result.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

OUT = Path("bench/out/reinvent_augment")


def prior(name: str, randomize: bool, args) -> Path:
    from towerlab import config
    from towerlab.engine import fit
    from towerlab.recipes import get

    run = OUT / name
    if (run / "final_metrics.json").is_file():
        return run
    data = OUT / "zinc.txt"
    data.parent.mkdir(parents=True, exist_ok=True)
    zinc = Path(os.environ["TOWERLAB_DATA"]) / "zinc250k_jtvae" / "valid.txt"
    data.write_text("\n".join(zinc.read_text().split()[: args.molecules]) + "\n")
    fields = {"data": str(data), "max_len": 81, "hidden": 256, "layers": 2, "dropout": 0.0, "batch_size": 64}
    fields |= {"lr": 2e-3, "max_steps": args.prior_steps, "eval_every_steps": args.prior_steps, "randomize": randomize}
    fit(get("smiles-lstm"), config.build(get("smiles-lstm").Config, None, fields), out=run)
    return run


def drawn(m, net) -> dict:
    import torch

    from towerlab.chem import objectives

    with torch.no_grad():
        smiles = m.strings(m.recipe.sample(net, 256, 1.0, torch.Generator().manual_seed(123)))
    values = [v for v in objectives.get("qed")(smiles) if v is not None]
    return {"validity": len(values) / 256, "mean_qed": sum(values) / max(1, len(values))}


def agent(run: Path, augment: int, args) -> dict:
    import contextlib
    import io

    from towerlab import checkpoint
    from towerlab.chem import objectives
    from towerlab.generate import model as gen
    from towerlab.generate.reinvent import Settings, reinvent

    m = gen.load(run)
    out = OUT / f"{run.name}-augment{augment}"
    s = Settings(steps=args.steps, batch_size=32, lr=1e-3, sigma=60, augment=augment, max_calls=0)
    with contextlib.redirect_stdout(io.StringIO()):
        reinvent(m, objectives.get("qed"), out, s)
    net = copy.deepcopy(m.net)
    net.load_state_dict(checkpoint.load_weights(checkpoint.find(out, "last")))
    return drawn(m, net)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--molecules", type=int, default=2000)
    p.add_argument("--prior-steps", type=int, default=600)
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    from towerlab.generate import model as gen

    rows = []
    for name, randomize in (("canonical", False), ("randomized", True)):
        run = prior(f"prior-{name}", randomize, args)
        rows.append({"prior": name, "agent": "prior itself", **drawn(gen.load(run), gen.load(run).net)})
        for augment in (0, 2):
            rows.append({"prior": name, "agent": f"reinvent --augment {augment}", **agent(run, augment, args)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| prior | sampled from | validity | mean QED of the valid ones (256 drawn, {args.steps} steps) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['prior']} | {r['agent']} | {r['validity']:.3f} | {r['mean_qed']:.3f} |")
    (OUT / "result.json").write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
