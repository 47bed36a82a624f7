"""A REINVENT-style agent (Olivecrona et al. 2017; REINVENT 4, Loeffler et al. 2024): a copy of a trained
smiles-lstm prior, fine-tuned by reinforcement learning. Each step samples a batch from the agent, scores it (each
molecule once: a repeated molecule is no new objective call, as PMO counts), passes the scores through a diversity
filter (generate/diversity.py), and pulls the agent's log-likelihood of each molecule toward the augmented
likelihood, the prior's log-likelihood plus sigma times the score:

    loss = mean over the batch and the replayed molecules of (log P_prior(x) + sigma * S(x) - log P_agent(x))^2

The prior keeps the agent writing sensible SMILES while the score pulls it toward good ones. Experience replay
draws molecules from a memory of the best so far into each update; Augmented Memory (Guo & Schwaller 2024) adds
`augment` updates per step on randomised SMILES of the batch and of the whole memory (the same molecules written
another way: more learning per objective call), and purges from the memory the molecules whose scaffold bucket is
full.

Resumable: every `checkpoint_every` steps the agent, its optimizer, the molecules scored, the memory and the
filter's counts go into a checkpoint of the output folder; each step's randomness comes from (seed, step), so a
search killed at any moment and run again continues to the same molecules (bit for bit on the CPU)."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict
from pathlib import Path

import torch

from towerlab import checkpoint
from towerlab.chem import props
from towerlab.chem.objectives import Objective
from towerlab.errors import CheckpointError, ConfigError
from towerlab.files import atomic_write, held, json_text, make_dir
from towerlab.generate.diversity import DiversityFilter
from towerlab.generate.model import Model
from towerlab.generate.outputs import write_outputs
from towerlab.generate.scoring import ranked, score_new
from towerlab.generate.settings import ReinventSettings as Settings
from towerlab.generate.settings import other_settings
from towerlab.recipes import require

STALLED = 100  # steps in a row without one new molecule: the agent has collapsed onto what it knows; stop
CONVERGED = 1e-3  # PMO: a rise of the 100 best's mean smaller than this is no progress


def _seed(s: Settings, step: int) -> int:
    return s.seed * 1_000_003 + step


class Agent:
    """The prior (frozen) and the agent being trained, with what one update needs."""

    def __init__(self, m: Model, s: Settings):
        self.m, self.s = m, s
        self.prior = m.net.eval()
        for p in self.prior.parameters():
            p.requires_grad_(False)
        self.net = copy.deepcopy(m.net).train()  # (cuDNN's LSTM backward needs training mode on a GPU)
        for p in self.net.parameters():
            p.requires_grad_(True)
        for mod in self.net.modules():  # no dropout: the agent's likelihood is the prior's at the start, exactly
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
            elif isinstance(mod, torch.nn.RNNBase):
                mod.dropout = 0.0
        self.opt = torch.optim.Adam(self.net.parameters(), lr=s.lr)
        self.device = next(self.net.parameters()).device

    def sample(self, g: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.m.recipe.sample(self.net, self.s.batch_size, self.s.temperature, g)

    def encode(self, smiles: list[str], scores: list[float]) -> tuple[torch.Tensor, list[float]]:
        """Token rows of the SMILES the vocabulary can write (a randomised form may be longer than max_len)."""
        tokens, kept = self.m.vocab.encode(smiles)
        return tokens, [scores[i] for i in kept]

    def update(self, tokens: torch.Tensor, scores: list[float]) -> torch.Tensor:
        """One Adam step on the augmented-likelihood loss of these sequences; the loss, on the device (read once a
        step, not once an update: no host-device sync for the Augmented Memory updates)."""
        tokens = tokens.to(self.device)
        with torch.no_grad():
            prior = self.m.recipe.log_likelihood(self.prior, tokens)
        agent = self.m.recipe.log_likelihood(self.net, tokens)
        target = prior + self.s.sigma * torch.tensor(scores, dtype=prior.dtype, device=self.device)
        loss = (target - agent).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


class Memory:
    """The best molecules so far by the score the agent learned from (canonical SMILES -> score), at most `size`."""

    def __init__(self, size: int, items: dict | None = None):
        self.size, self.items = size, dict(items or {})

    def add(self, pairs: list[tuple[str, float]]) -> None:
        for c, v in pairs:
            if v > 0:
                self.items[c] = max(v, self.items.get(c, 0.0))
        best = sorted(self.items.items(), key=lambda kv: (-kv[1], kv[0]))[: self.size]
        self.items = dict(best)

    def purge(self, full) -> None:
        self.items = {c: v for c, v in self.items.items() if not full(c)}

    def draw(self, n: int, rng: random.Random) -> tuple[list[str], list[float]]:
        chosen = rng.sample(sorted(self.items), min(n, len(self.items)))
        return chosen, [self.items[c] for c in chosen]


def reinvent(m: Model, objective: Objective, out: Path, s: Settings) -> list[dict]:
    """Run (or continue) the agent into `out`; returns the per-step history. A second process in the same folder
    is refused while the first lives."""
    require(m.recipe, "sequence", command="`towerlab chem reinvent`")
    s.validate()
    with held(make_dir(out, "the output folder (--out)"), "searched"):
        return _run(m, objective, out, s)


def _check_settings(out: Path, mine: dict) -> None:
    settings = out / "settings.json"
    if settings.is_file():  # the same search continued (more steps or calls allowed), never another one mixed in
        if differ := ", ".join(other_settings(json.loads(settings.read_text()), mine, free=("steps", "max_calls"))):
            raise ConfigError(
                f"{out} holds a REINVENT search with other settings ({differ}: {settings}); choose another --out"
            )
    atomic_write(settings, json.dumps(mine, indent=1).encode())


def _resume(agent: Agent, out: Path, objective: Objective, df: DiversityFilter) -> tuple[int, dict, list, Memory]:
    memory = Memory(agent.s.memory_size)
    try:
        folder = checkpoint.find(out, "last")
    except CheckpointError:
        if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
            raise  # checkpoints exist and none verifies: say so, never start over silently
        return 0, {}, [], memory
    agent.net.load_state_dict(checkpoint.load_weights(folder))
    state = checkpoint.load_state(folder)
    agent.opt.load_state_dict(state["optimizer"])
    objective.restore(json.loads(state["objective"]))
    df.counts = json.loads(state["filter"])
    memory.items = json.loads(state["memory"])
    print(f"resuming {out} after step {state['step']}")
    return state["step"], json.loads(state["seen"]), json.loads(state["history"]), memory


def _save(out: Path, step: int, agent: Agent, seen: dict, history: list, objective, df, memory: Memory) -> None:
    checkpoint.save(
        out / "checkpoints",
        step,
        {"model": agent.net.state_dict()},
        {
            "optimizer": agent.opt.state_dict(),
            "step": step,
            "seen": json.dumps(seen),
            "history": json.dumps(history),
            "objective": json.dumps(objective.state()),
            "filter": json.dumps(df.counts),
            "memory": json.dumps(memory.items),
        },
        ["last"],
    )


def _recorded(s: Settings) -> dict:
    """The settings a search folder records; patience only when on, so searches begun before it existed go on."""
    return {k: v for k, v in asdict(s).items() if not (k == "patience" and v == 0)}


def converged(history: list[dict], patience: int) -> bool:
    """PMO's stop for REINVENT: in each of the last `patience` steps, all past 1,000 calls, the mean of the 100 best
    rose by less than CONVERGED."""
    if not patience or len(history) <= patience:
        return False
    last = history[-patience - 1 :]
    if any(h.get("top100_mean") is None or h["scoring_calls"] <= 1000 for h in last):
        return False
    return all(b["top100_mean"] - a["top100_mean"] < CONVERGED for a, b in zip(last, last[1:]))


def _run(m: Model, objective: Objective, out: Path, s: Settings) -> list[dict]:
    _check_settings(out, {**_recorded(s), "objective": objective.name, "run": str(m.run_dir.absolute())})
    agent = Agent(m, s)
    df = DiversityFilter(s.diversity_filter, s.bucket_size, s.min_score)
    saved, seen, history, memory = _resume(agent, out, objective, df)
    for step in range(saved + 1, s.steps + 1):
        if s.max_calls and objective.calls >= s.max_calls:
            print(f"--max-calls {s.max_calls} reached after step {step - 1}", flush=True)
            break
        if len(history) >= STALLED and not any(h["new_molecules"] for h in history[-STALLED:]):
            print(f"no new molecule in the last {STALLED} steps: the agent has stopped exploring; ending", flush=True)
            break
        if converged(history, s.patience):
            print(f"the 100 best rose by less than {CONVERGED} in {s.patience} steps (PMO's stop); ending", flush=True)
            break
        history.append(_step(agent, objective, seen, df, memory, step))
        print(json_text(history[-1]), flush=True)
        if step % s.checkpoint_every == 0:
            saved = step
            _save(out, step, agent, seen, history, objective, df, memory)
    if history and history[-1]["step"] != saved:  # the last step, when it fell between checkpoints
        _save(out, history[-1]["step"], agent, seen, history, objective, df, memory)
    write_outputs(out, seen, history, objective.name, x="step", max_calls=s.max_calls)
    return history


def _step(agent: Agent, objective: Objective, seen: dict, df: DiversityFilter, memory: Memory, step: int) -> dict:
    s = agent.s
    torch.manual_seed(_seed(s, step))  # anything a recipe draws from the default generator
    g = torch.Generator().manual_seed(_seed(s, step))
    tokens = agent.sample(g)
    known = len(seen)
    canon = score_new(agent.m.strings(tokens), objective, seen, s.max_calls)
    raw = [seen.get(c) if c else None for c in canon]  # None: not a molecule, failed, or past the budget
    scores = [0.0 if v is None else df(c, v) for c, v in zip(canon, raw)]
    rng = random.Random(_seed(s, step))
    replayed, replay_scores = memory.draw(s.replay, rng) if s.memory_size else ([], [])
    extra, extra_scores = agent.encode(replayed, replay_scores)
    loss = agent.update(torch.cat([tokens, extra.to(tokens.device)]), scores + extra_scores)
    memory.add([(c, v) for c, v in zip(canon, scores) if c])
    memory.purge(df.full)
    good = [(c, v) for c, v in zip(canon, scores) if c] + list(memory.items.items())
    for r in range(s.augment):  # Augmented Memory: the same molecules, written from another atom order
        again, again_scores = agent.encode(
            props.random_smiles([c for c, _ in good], _seed(s, step) * 97 + r), [v for _, v in good]
        )
        if len(again):
            agent.update(again, again_scores)
    valid = [v for v in raw if v is not None]
    top = ranked(seen)[:100]
    return {
        "step": step,
        "best": seen[top[0]] if top else None,
        "top10_mean": sum(seen[c] for c in top[:10]) / len(top[:10]) if top else None,
        "top100_mean": sum(seen[c] for c in top) / len(top) if top else None,
        "batch_mean": sum(valid) / len(valid) if valid else None,
        "valid_share": sum(c is not None for c in canon) / len(canon),
        "new_molecules": len(seen) - known,
        "scoring_calls": objective.calls,
        "failed": objective.failed,
        "loss": float(loss),
        "memory": len(memory.items),
        "scaffolds": len(df.counts),
    }
