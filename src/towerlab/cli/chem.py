"""`towerlab chem ACTION ...`: one parser per action, each with only its own flags; the optimisers' flags are made
from their Settings (generate/settings.py), so a default is written once."""

from __future__ import annotations

import argparse

from towerlab import config
from towerlab.cli.args import POSITIVE, add_checkpoint, at_least, count
from towerlab.generate import settings

OBJECTIVE = (
    "qed, plogp, plogp-z (ChemTS's scale), logp, similarity:SMILES, guacamol:NAME (a goal-directed v2 "
    "benchmark or a PMO task), scoring:FILE (= --scoring FILE) or package.module:function"
)


def add(sub) -> None:
    chem = sub.add_parser(
        "chem",
        help="use a molecule generator: sample; encode, decode, optimize (autoencoders); "
        "hillclimb, mcts, reinvent (smiles-lstm); graph-ga (no model: molecules from --start)",
    )
    actions = chem.add_subparsers(dest="action", required=True, metavar="ACTION")
    for adder in (_sample, _encode, _decode, _optimize, _hillclimb, _mcts, _reinvent, _graph_ga):
        adder(actions).set_defaults(func=cmd_chem)


def _action(
    actions,
    name: str,
    help: str,
    run: bool = True,
    out: str = "the CSV to write (default: RUN_DIR/<action>.csv; a PNG grid beside it)",
) -> argparse.ArgumentParser:
    p = actions.add_parser(name, help=help, description=help)
    # every action but graph-ga reads a trained run; optional here so that its absence is one line naming it
    p.add_argument("run_dir", nargs="?", help="the trained run" if run else argparse.SUPPRESS)
    if run:
        add_checkpoint(p, "best")
    p.add_argument("--out", help=out)
    return p


def _from_settings(p, cls) -> None:
    config.add_arguments(p.add_argument_group("settings"), cls)


def _sample(actions):
    p = _action(
        actions, "sample", "sample molecules; validity, uniqueness, novelty (and FCD, KL) against the training set"
    )
    p.add_argument("--n", type=POSITIVE, default=1000, help="how many molecules")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--temperature",
        type=at_least(0.0),
        default=None,
        help="sampling temperature (0: the most probable token; default: 1 for smiles-lstm, 0 for autoencoders)",
    )
    p.add_argument("--sample-tokens", action="store_true", help="draw each token (= --temperature 1)")
    p.add_argument("--train-data", help="the training SMILES for novelty (default: the file the run trained on)")
    p.add_argument(
        "--reference",
        help="also report novelty against this SMILES file, e.g. "
        "$TOWERLAB_DATA/moses/train.csv.gz (canonical set cached)",
    )
    p.add_argument("--fcd", action="store_true", help="also report the Frechet ChemNet Distance (fcd_torch)")
    p.add_argument(
        "--fcd-reference",
        help="the FCD's reference set (default: $TOWERLAB_DATA/moses/test.csv.gz; its statistics cached)",
    )
    p.add_argument(
        "--kl", action="store_true", help="also report GuacaMol's KL-divergence score against the training set"
    )
    return p


def _encode(actions):
    p = _action(actions, "encode", "SMILES file -> latent vectors (autoencoders)")
    p.add_argument("input", nargs="?", help="SMILES file")
    return p


def _decode(actions):
    p = _action(actions, "decode", "latent vectors (CSV) -> SMILES (autoencoders)")
    p.add_argument("input", nargs="?", help="latents CSV (what encode wrote)")
    return p


def _optimize(actions):
    p = _action(
        actions,
        "optimize",
        "raise a predicted property by gradient steps in latent space (autoencoders with a property head)",
    )
    p.add_argument(
        "input",
        nargs="?",
        help="seed SMILES file (default: --n-seeds drawn at random from the run's held-out molecules)",
    )
    p.add_argument("--property", default="qed", help="which predicted property to raise")
    p.add_argument("--steps", type=POSITIVE, default=50, help="gradient steps in latent space")
    p.add_argument("--lr", type=at_least(0.0, strict=True), default=0.05, help="Adam step in latent space")
    p.add_argument("--n-seeds", type=POSITIVE, default=20, help="seed molecules")
    p.add_argument("--seed", type=int, default=0, help="random seed (seed choice)")
    return p


def _optimiser(actions, name: str, help: str, cls, run: bool = True):
    p = _action(
        actions,
        name,
        help,
        run,
        out="the folder (default: RUN_DIR/<action>-<objective>-seed<N>; graph-ga: "
        "runs/graph-ga-<objective>-seed<N>); rerun to continue it",
    )
    p.add_argument("--objective", default="qed", help=OBJECTIVE)
    p.add_argument(
        "--scoring",
        metavar="FILE",
        help="a scoring config (YAML: components such as qed, sa, similarity, smarts, guacamol objectives, a "
        "chemvae's property head, each with a transform and a weight, combined by a weighted geometric or "
        "arithmetic mean; generate/scoring_config.py); replaces --objective",
    )
    p.add_argument(
        "--score-workers",
        type=count(0),
        default=1,
        help="score molecules in this many processes (0: one "
        "per CPU core); for slow objectives; the same scores and molecules as one",
    )
    _from_settings(p, cls)
    return p


def _hillclimb(actions):
    p = _optimiser(
        actions,
        "hillclimb",
        "hill-climb MLE (GuacaMol's SMILES LSTM baseline): sample, keep the best, fine-tune, repeat",
        settings.HillclimbSettings,
    )
    p.add_argument(
        "--start",
        help="SMILES file whose best --keep molecules seed the pool (default: the run's "
        "training file, as GuacaMol's baseline; `none`: no seeding)",
    )
    p.add_argument(
        "--start-limit",
        type=count(0),
        default=0,
        help="score a seeded draw of this many molecules of --start (0: all of them)",
    )
    return p


def _mcts(actions):
    return _optimiser(
        actions, "mcts", "ChemTS tree search over SMILES tokens, rolled out by the RNN", settings.MctsSettings
    )


def _reinvent(actions):
    return _optimiser(
        actions,
        "reinvent",
        "REINVENT's agent: a copy of the prior fine-tuned by reinforcement learning (augmented likelihood), with "
        "experience replay, Augmented Memory and a diversity filter, within --max-calls objective calls",
        settings.ReinventSettings,
    )


def _graph_ga(actions):
    p = _optimiser(
        actions,
        "graph-ga",
        "Jensen's graph-based genetic algorithm (GuacaMol's baseline settings by default); needs no trained model",
        settings.GraphGaSettings,
        run=False,
    )
    p.add_argument(
        "--start",
        help="SMILES file; the first population is its best (default: $TOWERLAB_DATA/zinc250k_jtvae/valid.txt)",
    )
    p.add_argument(
        "--start-limit",
        type=count(0),
        default=0,
        help="score a seeded draw of this many molecules of --start (0: all of them)",
    )
    return p


def cmd_chem(args) -> int:
    from towerlab.generate.commands import run

    run(args)
    return 0
