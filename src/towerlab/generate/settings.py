"""The settings of the molecule optimisers (hill-climb, ChemTS tree search, graph GA, REINVENT), with their help
text: one definition that the optimisers read and `towerlab chem ACTION --help` lists (this module imports no torch
or RDKit, so the help stays quick)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from towerlab.config import opt
from towerlab.errors import ConfigError


@dataclass(frozen=True)
class HillclimbSettings:
    # guacamol_baselines smiles_lstm_hc defaults: 20 rounds, 1024 sampled, 512 kept, 2 epochs at batch 256, Adam
    # lr 1e-3, gradients clipped to norm 1.0; the pool seeded with the best molecules of the training file
    rounds: int = opt(20, "rounds of sample, score, keep the best, fine-tune")
    samples: int = opt(1024, "molecules sampled per round")
    keep: int = opt(512, "best molecules kept (the pool) and fine-tuned on")
    epochs: int = opt(2, "fine-tuning epochs per round")
    batch_size: int = opt(256, "fine-tuning batch")
    lr: float = opt(1e-3, "fine-tuning learning rate (Adam)")
    temperature: float = opt(1.0, "sampling temperature")
    seed: int = opt(0, "random seed (sampling, fine-tuning order)")
    clip: float = opt(1.0, "fine-tuning gradient norm clip")
    max_calls: int = opt(0, "bound on objective calls, never exceeded; the rounds end when it is reached (0: none)")

    def validate(self) -> None:
        if min(self.rounds, self.samples, self.keep, self.epochs, self.batch_size) <= 0 or self.max_calls < 0:
            raise ConfigError("rounds, samples, keep, epochs and batch_size must be > 0, max_calls >= 0")
        if self.lr <= 0 or self.temperature <= 0:
            raise ConfigError("lr and temperature must be > 0")


@dataclass(frozen=True)
class MctsSettings:
    budget: int = opt(5000, "valid molecules to generate (ChemTS's count)")
    expand: int = opt(
        30, "next tokens drawn from the RNN per expansion; the distinct ones are candidate children (ChemTS: 30)"
    )
    rollouts: int = opt(1, "completions per candidate child (ChemTS: 1)")
    c: float = opt(1.0, "UCB exploration constant")
    temperature: float = opt(1.0, "sampling temperature")
    seed: int = opt(0, "random seed")
    max_tokens: int = opt(81, "longest SMILES a completion may reach (ChemTS's cap)")
    max_calls: int = opt(0, "bound on objective calls, never exceeded (0: none)")

    def validate(self) -> None:
        if (
            min(self.budget, self.expand, self.rollouts, self.max_tokens) <= 0
            or self.c < 0
            or self.temperature <= 0
            or self.max_calls < 0
        ):
            raise ConfigError(
                "budget, expand, rollouts and max_tokens must be > 0, c >= 0, temperature > 0, max_calls >= 0"
            )


@dataclass(frozen=True)
class GraphGaSettings:
    # guacamol_baselines graph_ga defaults: population 100, offspring 200, mutation rate 0.01, 1000 generations
    population: int = opt(100, "molecules kept per generation")
    offspring: int = opt(200, "children per generation")
    generations: int = opt(1000, "generations")
    mutation_rate: float = opt(0.01, "share of children mutated")
    max_calls: int = opt(0, "bound on objective calls, never exceeded (0: no bound besides the generations)")
    patience: int = opt(
        5,
        "stop when the population's scores have not changed for this many generations "
        "(GuacaMol's baseline: 5; 0: never)",
    )
    seed: int = opt(0, "random seed")

    def validate(self) -> None:
        if min(self.population, self.offspring, self.generations) <= 0 or min(self.max_calls, self.patience) < 0:
            raise ConfigError("population, offspring and generations must be > 0, max_calls and patience >= 0")
        if not 0 <= self.mutation_rate <= 1:
            raise ConfigError(f"mutation_rate={self.mutation_rate} must be in [0, 1]")


@dataclass(frozen=True)
class ReinventSettings:
    # REINVENT 4's reinforcement-learning defaults (batch 64, sigma 128, Adam lr 1e-4, an identical-Murcko-scaffold
    # diversity filter with buckets of 25 and min score 0.4, a replay memory of 100); Augmented Memory (Guo &
    # Schwaller 2024) off unless asked, since towerlab's priors learn canonical SMILES; PMO's budget of 10,000 calls
    steps: int = opt(
        2000, "agent updates at most (each samples --batch-size molecules); --max-calls usually ends first"
    )
    batch_size: int = opt(64, "molecules sampled per step")
    sigma: float = opt(128.0, "augmented likelihood: prior log-likelihood + sigma * score")
    lr: float = opt(1e-4, "agent learning rate (Adam)")
    temperature: float = opt(1.0, "sampling temperature")
    memory_size: int = opt(100, "experience replay: the best molecules kept (0: no replay)")
    replay: int = opt(10, "experience replay: molecules drawn from the memory into each update")
    augment: int = opt(
        0,
        "Augmented Memory: extra updates per step on randomised SMILES of the batch and the whole memory; for a "
        "prior trained on randomised SMILES (a prior that saw only canonical ones gives them little likelihood "
        "and the agent loses validity: docs/results.md)",
    )
    diversity_filter: str = opt(
        "identical_murcko",
        "scaffolds rewarded more than --bucket-size times score 0",
        ("identical_murcko", "identical_topological", "penalize_same_smiles", "none"),
    )
    bucket_size: int = opt(25, "diversity filter: molecules rewarded per scaffold")
    min_score: float = opt(0.4, "diversity filter: a molecule fills a bucket only from this score")
    max_calls: int = opt(10_000, "objective calls, never exceeded (PMO's budget; a repeated molecule is no call)")
    patience: int = opt(
        0,
        "stop once the mean of the 100 best has risen by less than 0.001 in this many steps in a row, past 1,000 "
        "calls (PMO's rule for its REINVENT: the rest of the budget is scored at the last top-10; 0: never)",
    )
    checkpoint_every: int = opt(5, "steps between checkpoints (a search killed in between repeats those steps)")
    seed: int = opt(0, "random seed (sampling, replay, SMILES randomisation)")

    def validate(self) -> None:
        if min(self.steps, self.batch_size, self.bucket_size, self.checkpoint_every) <= 0:
            raise ConfigError("steps, batch_size, bucket_size and checkpoint_every must be > 0")
        if min(self.memory_size, self.replay, self.augment, self.max_calls, self.patience) < 0:
            raise ConfigError("memory_size, replay, augment, max_calls and patience must be >= 0")
        if self.lr <= 0 or self.temperature <= 0 or self.sigma < 0:
            raise ConfigError("lr and temperature must be > 0, sigma >= 0")


# -- a search continued in its folder --------------------------------------------------------------------------


def other_settings(theirs: dict, mine: dict, free: tuple[str, ...]) -> list[str]:
    """The settings in which a folder's recorded search (THEIRS) and a command's (MINE) differ, all but the FREE
    keys (a budget, which may grow); empty: the same search. The files they name (`run`, `start`) are compared as
    files: a relative path, an absolute one with `..` in it or a link to the same file is the same search."""

    def value(d: dict, k: str):
        v = d.get(k)
        return os.path.realpath(v) if k in ("run", "start") and v else v

    return sorted(k for k in {*theirs, *mine} - set(free) if value(theirs, k) != value(mine, k))
