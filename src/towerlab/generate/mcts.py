"""ChemTS (Yang et al. 2017): Monte Carlo tree search over SMILES prefixes, with a trained SMILES language model as
the expansion and rollout policy.

As tsudalab/ChemTS runs it (mcts_logp_improved_version): a node is a token prefix. Each iteration selects from the
root by UCB1 down to a node not yet expanded; draws `expand` (30) next tokens from the RNN and makes a candidate
child of each distinct one; completes every candidate once by sampling the model (one batch); keeps only the
candidates whose completion is a valid molecule, each backing its reward up the path. The reward is ChemTS's
0.8 s / (1 + |0.8 s|); a node none of whose new candidates completes validly gets -1 (and after three such expansions
it is closed). A node whose children are all finished molecules already scored is drawn from again, for children it
does not have yet (ChemTS's tree would stop there; a small model's peaked distributions closed the whole tree
early). SMILES are capped at 81 tokens, as ChemTS. The budget counts valid molecules, as ChemTS counts them; every
completion (valid or not) and every objective call are counted and printed beside it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from towerlab.chem.objectives import Objective
from towerlab.files import atomic_write, json_text, make_dir
from towerlab.generate.model import Model
from towerlab.generate.outputs import write_outputs
from towerlab.generate.scoring import score_new
from towerlab.generate.settings import MctsSettings as Settings
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


def squash(score: float | None) -> float:
    """ChemTS's reward: 0.8 s / (1 + |0.8 s|); -1 for no molecule."""
    return -1.0 if score is None else 0.8 * score / (1 + abs(0.8 * score))


class Search:
    def __init__(self, m: Model, objective: Objective, s: Settings):
        require(m.recipe, "sequence", command="`towerlab chem mcts`")
        s.validate()
        self.m, self.objective, self.s = m, objective, s
        self.root = Node(())
        self.g = torch.Generator().manual_seed(s.seed)
        self.seen: dict[str, float | None] = {}
        self.history: list[dict] = []
        self.max_len = min(m.vocab.max_len, s.max_tokens)
        self.molecules = 0  # valid completions, new or seen before (ChemTS's count; the budget)
        self.completions = 0  # every completion, valid or not
        self.failures: dict[int, int] = {}  # id(node) -> expansions that gave no valid child

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
        """UCB1 from the root down to a node to expand: one without children, or one whose children are all finished
        molecules already scored (it is drawn from again, for children it does not have yet). None when the root
        itself is closed."""
        node = self.root
        while node.children:
            open_ = [ch for ch in node.children if not (ch.terminal and ch.visits)]
            if not open_:
                return None if node.terminal else node
            node = max(open_, key=lambda ch: ch.ucb(self.s.c))
        return node

    def _candidates(self, node: Node) -> list[Node]:
        """Children-to-be: the distinct tokens among `expand` draws from the RNN after the node's prefix, less the
        children it has already."""
        if node.terminal or len(node.prefix) >= self.max_len:
            node.terminal = True
            return [node]
        logits, _ = self._state_after([node.prefix])
        probs = torch.softmax(logits[0] / self.s.temperature, -1)
        drawn = torch.multinomial(probs, self.s.expand, replacement=True, generator=self.g).tolist()
        have = {(ch.prefix, ch.terminal) for ch in node.children}
        fresh = [Node(node.prefix + (t,) if t else node.prefix, node, terminal=t == 0) for t in dict.fromkeys(drawn)]
        return [ch for ch in fresh if (ch.prefix, ch.terminal) not in have]

    def _score(self, token_lists: list[list[int]]) -> list[tuple[bool, float | None]]:
        """(is a molecule, its score or None) per completion; each molecule scored once, invalid ones counted."""
        smiles = self.m.strings(torch.tensor([t + [0] * (self.max_len - len(t)) for t in token_lists]))
        canon = score_new(smiles, self.objective, self.seen, self.s.max_calls)
        self.completions += len(smiles)
        self.molecules += sum(c is not None for c in canon)
        return [(c is not None, self.seen.get(c) if c else None) for c in canon]

    def run(self) -> list[dict]:
        start = time.process_time()
        while (
            self.molecules < self.s.budget
            and not self.root.terminal
            and not (self.s.max_calls and self.objective.calls >= self.s.max_calls)
        ):
            leaf = self._select()
            if leaf is None:  # every branch closed: the model writes nothing new here
                break
            self._grow(leaf)
            scores = [v for v in self.seen.values() if v is not None]
            self.history.append(
                {
                    "molecules": self.molecules,
                    "best": max(scores, default=None),
                    "completions": self.completions,
                    "distinct_valid": len(scores),
                    "scoring_calls": self.objective.calls,
                    "cpu_s": time.process_time() - start,
                }
            )
        self.stopped = self._why_stopped()  # (also in outcome.json)
        print(f"stopped after {self.molecules} molecules: {self.stopped}", flush=True)
        return self.history

    def _why_stopped(self) -> str:
        """In words, why the search ended (a search that ends before --budget must say so)."""
        if self.molecules >= self.s.budget:
            return f"--budget {self.s.budget} reached"
        if self.s.max_calls and self.objective.calls >= self.s.max_calls:
            return f"--max-calls {self.s.max_calls} reached before --budget {self.s.budget}"
        return (
            f"the tree is exhausted before --budget {self.s.budget}: every branch is closed (the model writes no "
            f"new valid molecule below any prefix; raise --temperature or --expand to widen it)"
        )

    def _grow(self, leaf: Node) -> None:
        """Expand the leaf: its candidates completed in batches (one per prefix length), the valid ones kept."""
        candidates = self._candidates(leaf)
        if (
            len(candidates) == 1 and candidates[0] is leaf
        ):  # a finished molecule (or the length cap): its reward backs up again
            self._backup(leaf, squash(self._score([list(leaf.prefix)])[0][1]))
            return
        kept: dict[int, Node] = {}
        for group in _by_length(candidates):
            todo = [ch for ch in group for _ in range(self.s.rollouts)]
            done = [list(ch.prefix) for ch in todo] if group[0].terminal else self._rollout([ch.prefix for ch in todo])
            for ch, (valid, value) in zip(todo, self._score(done)):
                if valid:  # ChemTS keeps a child only when its rollout is a molecule
                    kept[id(ch)] = ch
                    self._backup(ch, squash(value))
        leaf.children += list(kept.values())
        if not kept:  # nothing new and valid below this prefix this time: less attractive, closed after three tries
            self._backup(leaf, -1.0)
            self.failures[id(leaf)] = self.failures.get(id(leaf), 0) + 1
            leaf.terminal = self.failures[id(leaf)] >= 3

    @staticmethod
    def _backup(node: Node | None, reward: float) -> None:
        while node is not None:
            node.visits += 1
            node.reward += reward
            node = node.parent


def _by_length(nodes: list[Node]) -> list[list[Node]]:
    """Finished molecules apart from open prefixes (a batch completes prefixes of one length)."""
    groups: dict[tuple[bool, int], list[Node]] = {}
    for n in nodes:
        groups.setdefault((n.terminal, len(n.prefix)), []).append(n)
    return list(groups.values())


def mcts(m: Model, objective: Objective, out: Path, s: Settings) -> list[dict]:
    make_dir(out, "the output folder (--out)")
    search = Search(m, objective, s)
    history = search.run()
    result = write_outputs(out, search.seen, history, objective.name, x="molecules", max_calls=s.max_calls)
    atomic_write(out / "outcome.json", json_text({**result, "stopped": search.stopped}, indent=1).encode())
    return history
