"""ChemTS (Yang et al. 2017): Monte Carlo tree search over SMILES prefixes, with a trained SMILES language model as
the expansion and rollout policy.

A node is a token prefix. Each iteration selects from the root by UCB1 down to a node not yet expanded; expands
it with its most probable next tokens (the `expand` most probable, as ChemTS's threshold on the RNN's
probabilities); completes each new child by sampling the model (all children of the node in one batch, `rollouts`
each); scores every completed valid molecule with the objective and backs the reward up the path. The reward is
ChemTS's squashed score s / (1 + |s|); an invalid completion rewards -1, an objective failure likewise (counted).
The budget is the number of molecules scored."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from towerlab.chem import props
from towerlab.chem.objectives import Objective
from towerlab.errors import ConfigError
from towerlab.generate.hillclimb import write_outputs
from towerlab.generate.scoring import score_new
from towerlab.generate.model import Model
from towerlab.recipes import require


@dataclass
class Node:
    prefix: tuple[int, ...]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    reward: float = 0.0
    terminal: bool = False

    def ucb(self, c: float) -> float:
        if self.visits == 0:
            return math.inf
        return self.reward / self.visits + c * math.sqrt(2 * math.log(self.parent.visits) / self.visits)


@dataclass(frozen=True)
class Settings:
    budget: int = 5000
    expand: int = 5
    rollouts: int = 4
    c: float = 1.0
    temperature: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        if min(self.budget, self.expand, self.rollouts) <= 0 or self.c < 0 or self.temperature <= 0:
            raise ConfigError("budget, expand and rollouts must be > 0, c >= 0, temperature > 0")


def squash(score: float | None) -> float:
    return -1.0 if score is None else score / (1 + abs(score))


class Search:
    def __init__(self, m: Model, objective: Objective, s: Settings):
        require(m.recipe, "sequence", command="`towerlab chem mcts`")
        s.validate()
        self.m, self.objective, self.s = m, objective, s
        self.root = Node(())
        self.g = torch.Generator().manual_seed(s.seed)
        self.seen: dict[str, float | None] = {}
        self.history: list[dict] = []
        self.max_len = m.vocab.max_len
        self.molecules = 0  # completions evaluated, valid or not, new or seen before (ChemTS's count)

    @torch.no_grad()
    def _state_after(self, prefixes: list[tuple[int, ...]]):
        """Next-token logits and the model state after each prefix (fed from the start symbol)."""
        r, net = self.m.recipe, self.m.net
        n = len(prefixes)
        state = r.initial_state(net, n)
        last = torch.zeros(n, dtype=torch.long)
        logits, state = r.next_logits(net, last, state)
        for i in range(len(prefixes[0])):
            logits, state = r.next_logits(net, torch.tensor([p[i] for p in prefixes]), state)
        return logits, state

    @torch.no_grad()
    def _rollout(self, prefix_batch: list[tuple[int, ...]]) -> list[list[int]]:
        """Complete every prefix (all of one length) by sampling the model to its end token or max_len."""
        r, net = self.m.recipe, self.m.net
        logits, state = self._state_after(prefix_batch)
        out = [list(p) for p in prefix_batch]
        alive = torch.ones(len(out), dtype=torch.bool)
        for _ in range(self.max_len - len(prefix_batch[0])):
            probs = torch.softmax(logits / self.s.temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=self.g)[:, 0]
            nxt = torch.where(alive, nxt, torch.zeros_like(nxt))
            for i in alive.nonzero()[:, 0].tolist():
                if nxt[i]:
                    out[i].append(int(nxt[i]))
            alive &= nxt != 0
            if not alive.any():
                break
            logits, state = r.next_logits(net, nxt, state)
        return out

    def _select(self) -> Node | None:
        """UCB1 from the root to a node not yet expanded; None when the path ends in a node whose children are all
        finished molecules already scored (that node is then closed too)."""
        node = self.root
        while node.children:
            open_ = [ch for ch in node.children if not (ch.terminal and ch.visits)]
            if not open_:
                node.terminal = True
                return None
            node = max(open_, key=lambda ch: ch.ucb(self.s.c))
        return node

    def _expand(self, node: Node) -> list[Node]:
        if node.terminal or len(node.prefix) >= self.max_len:
            node.terminal = True
            return [node]
        logits, _ = self._state_after([node.prefix])
        top = torch.topk(logits[0], min(self.s.expand, logits.shape[1])).indices.tolist()
        node.children = [Node(node.prefix + (t,) if t else node.prefix, node, terminal=t == 0) for t in top]
        return node.children

    def _score(self, token_lists: list[list[int]]) -> list[float | None]:
        smiles = self.m.strings(torch.tensor([t + [0] * (self.max_len - len(t)) for t in token_lists]))
        score_new(smiles, self.objective, self.seen)  # each molecule scored once; invalid ones counted
        self.molecules += len(smiles)
        return [self.seen.get(c) if (c := props.canonical(x)) else None for x in smiles]

    def run(self) -> list[dict]:
        start = time.process_time()
        while self.molecules < self.s.budget and not self.root.terminal:
            leaf = self._select()
            if leaf is None:
                continue
            children = self._expand(leaf)
            todo = [ch for ch in children for _ in range(1 if ch.terminal else self.s.rollouts)]
            by_len: dict[int, list[Node]] = {}
            for ch in todo:
                by_len.setdefault(len(ch.prefix), []).append(ch)
            for group in by_len.values():
                done = ([list(ch.prefix) for ch in group] if group[0].terminal and all(ch.terminal for ch in group)
                        else self._rollout([ch.prefix for ch in group]))
                for ch, value in zip(group, self._score(done)):
                    self._backup(ch, squash(value))
            scores = [v for v in self.seen.values() if v is not None]
            self.history.append({"molecules": self.molecules, "best": max(scores, default=None),
                                 "distinct_valid": len(scores), "scoring_calls": self.objective.calls,
                                 "cpu_s": time.process_time() - start})
        return self.history

    @staticmethod
    def _backup(node: Node | None, reward: float) -> None:
        while node is not None:
            node.visits += 1
            node.reward += reward
            node = node.parent


def mcts(m: Model, objective: Objective, out: Path, s: Settings) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    search = Search(m, objective, s)
    history = search.run()
    write_outputs(out, search.seen, history, objective.name, x="molecules")
    return history
