"""Hill-climb maximum likelihood (Brown et al. 2019: the GuacaMol "SMILES LSTM" goal-directed baseline; Segler et
al. 2018's fine-tuning loop): each round samples the current model, scores the molecules, keeps the top K of
everything seen (the best so far stay in), and fine-tunes the model on them by maximum likelihood with the
recipe's own loss.

Resumable round by round: after every round the model, its optimizer, the pool and the objective's counts go into
a checkpoint of the output folder (the engine's checkpoint format: safetensors and a tensors-only state, checked
against a manifest). Each round's randomness comes from (seed, round), so a search stopped at any moment and run
again continues to the same molecules (bit for bit on the CPU)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from towerlab import checkpoint
from towerlab.chem.objectives import Objective
from towerlab.chem.tokens import Skipped
from towerlab.errors import CheckpointError, ConfigError
from towerlab.files import atomic_write, held, json_text, make_dir
from towerlab.generate.model import Model
from towerlab.generate.outputs import write_outputs
from towerlab.generate.scoring import Journal, best_of_file, ranked, score_new
from towerlab.generate.settings import HillclimbSettings as Settings
from towerlab.generate.settings import other_settings
from towerlab.precision import Precision
from towerlab.recipes import require
from towerlab.recipes.contract import Step


def _device(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


def _fine_tune(m: Model, opt: torch.optim.Optimizer, pool: list[str], s: Settings, round_: int) -> float:
    """Maximum likelihood on the kept molecules: s.epochs passes in shuffled batches; the mean loss."""
    tokens, _ = m.vocab.encode(pool, Skipped())
    g = torch.Generator().manual_seed(s.seed * 1_000_003 + round_)
    net, losses = m.net.train(), []  # 0-d tensors, read once at the end: no host sync per step on a GPU
    total = s.epochs * math.ceil(len(tokens) / s.batch_size)
    precision = Precision("fp32", _device(net))  # the prior's own precision: the Trainer's step, fp32
    for epoch in range(s.epochs):
        for idx in torch.randperm(len(tokens), generator=g).split(s.batch_size):
            opt.zero_grad(set_to_none=True)
            with precision.autocast():
                loss, _ = m.recipe.loss(net, (tokens[idx].to(_device(net)),), Step(len(losses), total, epoch))
            precision.backward(loss)
            precision.step(opt, net.parameters(), s.clip)
            losses.append(loss.detach())
    m.net.eval()
    return float(torch.stack(losses).double().mean()) if losses else 0.0


def _resume(m: Model, opt, out: Path, objective: Objective) -> tuple[int, dict, list[dict]]:
    try:
        folder = checkpoint.find(out, "last")
    except CheckpointError:
        if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
            raise  # checkpoints exist and none verifies: say so, never start over silently
        return 0, {}, []  # a new search
    m.net.load_state_dict(checkpoint.load_weights(folder))
    state = checkpoint.load_state(folder)
    opt.load_state_dict(state["optimizer"])
    objective.restore(json.loads(state["objective"]))
    print(f"resuming {out} after round {state['round']}")
    return state["round"], json.loads(state["seen"]), json.loads(state["history"])


def hillclimb(
    m: Model, objective: Objective, out: Path, s: Settings, start: str = "", start_limit: int = 0
) -> list[dict]:
    """Run (or continue) the hill-climb into `out`; returns the per-round history. With `start` (a SMILES file, the
    run's training file for GuacaMol's baseline), the pool begins as that file's best s.keep molecules. A second
    process in the same folder is refused while the first lives."""
    require(m.recipe, "sequence", command="`towerlab chem hillclimb`")
    s.validate()
    with held(make_dir(out, "the output folder (--out)"), "searched"):
        return _climb(m, objective, out, s, start, start_limit)


def _climb(m: Model, objective: Objective, out: Path, s: Settings, start: str, start_limit: int) -> list[dict]:
    settings = out / "settings.json"
    mine = {
        **asdict(s),
        "objective": objective.name,
        "run": str(m.run_dir.absolute()),
        "start": str(Path(start).absolute()) if start else "",
        "start_limit": start_limit,
    }
    if settings.is_file():  # the same search continued (more --rounds allowed), never another one mixed in
        # a search may be given more rounds or calls
        if differ := ", ".join(other_settings(json.loads(settings.read_text()), mine, free=("rounds", "max_calls"))):
            raise ConfigError(
                f"{out} holds a hill-climb with other settings ({differ}: {settings}); choose another --out"
            )
    atomic_write(settings, json.dumps(mine, indent=1).encode())
    opt = torch.optim.Adam(m.net.parameters(), lr=s.lr)
    done, seen, history = _resume(m, opt, out, objective)
    if done == 0 and start:  # after a kill before round 1, the journal's chunks are read back, the rest scored
        journal = Journal(out / "start.jsonl")
        best_of_file(start, objective, s.keep, seen, start_limit, s.seed, s.max_calls, journal)
    for r in range(done + 1, s.rounds + 1):
        if s.max_calls and objective.calls >= s.max_calls:
            print(f"--max-calls {s.max_calls} reached after round {r - 1}", flush=True)
            break
        torch.manual_seed(s.seed * 1_000_003 + r)  # dropout in fine-tuning
        g = torch.Generator().manual_seed(s.seed * 1_000_003 + r)
        with torch.no_grad():
            sampled = m.strings(m.recipe.sample(m.net.eval(), s.samples, s.temperature, g))
        known = len(seen)
        canon = score_new(sampled, objective, seen, s.max_calls)
        new = len(seen) - known
        pool = ranked(seen)[: s.keep]
        if pool:
            loss = _fine_tune(m, opt, pool, s, r)
        else:  # a fresh prior with few samples can miss every time: say so, and sample again next round
            loss = None
            print(
                f"round {r}: none of the {len(sampled)} samples is a valid molecule with a score; nothing to "
                f"fine-tune on yet (more --samples helps)",
                flush=True,
            )
        valid = sum(c is not None for c in canon) / len(sampled)
        history.append(
            {
                "round": r,
                "best": seen[pool[0]] if pool else None,
                "mean_kept": sum(seen[c] for c in pool) / len(pool) if pool else None,
                "top10_mean": sum(seen[c] for c in pool[:10]) / len(pool[:10]) if pool else None,
                "valid_share": valid,
                "new_molecules": new,
                "scoring_calls": objective.calls,
                "failed": objective.failed,
                "fine_tune_loss": loss,
            }
        )
        print(json_text(history[-1]))
        checkpoint.save(
            out / "checkpoints",
            r,
            {"model": m.net.state_dict()},
            {
                "optimizer": opt.state_dict(),
                "round": r,
                "seen": json.dumps(seen),
                "history": json.dumps(history),
                "objective": json.dumps(objective.state()),
            },
            ["last"],
        )
    write_outputs(out, seen, history, objective.name, max_calls=s.max_calls)
    return history
