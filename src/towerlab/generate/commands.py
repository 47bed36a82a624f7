"""`towerlab chem ACTION RUN_DIR ...`: what each action does with a trained generator, and what it prints."""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields
from pathlib import Path

from towerlab.errors import ConfigError
from towerlab.files import json_text
from towerlab.generate.outputs import write_csv, write_grid


def _print(report: dict) -> None:
    print(json_text(report, indent=2))


def _grid(rows: list[dict], key: str, path: Path) -> None:
    valid = [r for r in rows if r.get("valid", True) and r["smiles"]][:12]
    if valid:
        write_grid([r["smiles"] for r in valid], [f"{key}={r[key]:.3f}" if key in r else "" for r in valid], path)
        print(f"grid: {path}")


def sample(args) -> None:
    from towerlab.chem import distribution
    from towerlab.generate import model as gen  # torch: only the actions that load a run

    m = gen.load(args.run_dir, args.checkpoint)
    out = Path(args.out) if args.out else m.run_dir / "sample.csv"
    temperature = 1.0 if args.sample_tokens else args.temperature
    smiles = gen.sample(m, args.n, args.seed, temperature)
    rows = [gen.describe(s) for s in smiles]
    write_csv(rows, out)
    fcd_ref = args.fcd_reference or (
        os.environ.get("TOWERLAB_DATA", "") and str(Path(os.environ["TOWERLAB_DATA"]) / "moses" / "test.csv.gz")
    )
    if args.fcd and not fcd_ref:
        raise ConfigError("--fcd needs a reference set: --fcd-reference FILE (MOSES: its test.csv.gz) or TOWERLAB_DATA")
    training, known = gen.training_set(m, args.train_data)
    report = distribution.report(
        smiles,
        training,
        k=10_000,
        reference=args.reference,
        fcd_reference=fcd_ref if args.fcd else None,
        kl=args.kl,
        train_canonical=known,
    )
    _print(report)
    _grid(rows, "qed", out.with_suffix(".png"))
    print(f"CSV: {out}")


def encode(args) -> None:
    from towerlab.generate import latent
    from towerlab.generate import model as gen  # torch: only the actions that load a run

    m = gen.load(args.run_dir, args.checkpoint, "autoencode", "`towerlab chem encode`")
    out = Path(args.out) if args.out else m.run_dir / "encode.csv"
    rows, report = latent.encode_file(m, gen.read_smiles(args.input, "encode"))
    write_csv(rows, out)
    _print(report)
    print(f"CSV: {out}")


def decode(args) -> None:
    from towerlab.generate import latent
    from towerlab.generate import model as gen  # torch: only the actions that load a run

    m = gen.load(args.run_dir, args.checkpoint, "autoencode", "`towerlab chem decode`")
    out = Path(args.out) if args.out else m.run_dir / "decode.csv"
    rows = latent.decode_file(m, args.input or "")
    write_csv(rows, out)
    print(f"{sum(r['valid'] for r in rows)} of {len(rows)} decoded SMILES are valid molecules")
    print(f"CSV: {out}")


def optimize(args) -> None:
    from towerlab.generate import latent
    from towerlab.generate import model as gen  # torch: only the actions that load a run

    m = gen.load(args.run_dir, args.checkpoint, "autoencode", "`towerlab chem optimize`")
    out = Path(args.out) if args.out else m.run_dir / "optimize.csv"
    seeds = (
        gen.read_smiles(args.input, "optimize")[: args.n_seeds]
        if args.input
        else latent.draw_seeds(gen.held_out_smiles(m), args.n_seeds, args.seed)
    )
    found = latent.optimize(m, seeds, args.property, args.steps, args.lr)
    write_csv(found, out)
    _grid(found, args.property, out.with_suffix(".png"))
    _print(latent.optimisation_report(m, found, seeds, args.property, args.steps, args.seed))
    print(f"{len(found)} valid molecules improve {args.property} over their seed (RDKit-computed); CSV: {out}")


def _settings(cls, args):
    """The optimiser's settings: its defaults (generate/settings.py), the flags given on top."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def _folder(args, parent: Path, kind: str, seed: int) -> Path:
    if args.out:
        return Path(args.out)
    what = Path(args.scoring).stem if args.scoring else args.objective
    return parent / f"{kind}-{re.sub(r'[^A-Za-z0-9._-]+', '_', what)}-seed{seed}"


def _objective(args):
    from towerlab.generate import scoring_config

    objective = scoring_config.objective(f"scoring:{args.scoring}" if args.scoring else args.objective)
    objective.workers = args.score_workers or os.cpu_count() or 1
    return objective


def _auc(out: Path) -> dict:
    """PMO's sample-efficiency figure from the optimiser's outcome.json (generate/scoring.summary)."""
    s = json.loads((out / "outcome.json").read_text())
    return {"auc_top10": s["auc_top10"], "auc_budget": s["budget"]}


def _searching(args, kind: str, settings_class):
    """(the loaded prior, the objective, the settings, the output folder) of a search over a sequence model."""
    from towerlab.generate import model as gen  # torch: only the actions that load a run

    m = gen.load(args.run_dir, args.checkpoint, "sequence", f"`towerlab chem {kind}`")
    s = _settings(settings_class, args)
    return m, _objective(args), s, _folder(args, m.run_dir, kind, s.seed)


def hillclimb(args) -> None:
    from towerlab.generate import model as gen
    from towerlab.generate.hillclimb import Settings
    from towerlab.generate.hillclimb import hillclimb as run

    m, objective, s, out = _searching(args, "hillclimb", Settings)
    start = "" if args.start == "none" else (args.start or str(gen.data_file(m)))
    history = run(m, objective, out, s, start, args.start_limit)
    _print(
        {**objective.counts(), "rounds": len(history), "best": history[-1]["best"] if history else None, **_auc(out)}
    )
    print(
        f"best molecules: {out / 'best.csv'}; per round: {out / 'rounds.csv'}, {out / 'score.png'}; "
        f"grid: {out / 'best.png'}"
    )


def mcts(args) -> None:
    from towerlab.generate.mcts import Settings
    from towerlab.generate.mcts import mcts as run

    m, objective, s, out = _searching(args, "mcts", Settings)
    history = run(m, objective, out, s)
    last = history[-1] if history else {}
    _print(
        {
            **objective.counts(),
            "molecules": last.get("molecules", 0),
            "completions": last.get("completions", 0),
            "best": last.get("best"),
            "cpu_s": last.get("cpu_s"),
            **_auc(out),
        }
    )
    grid = f"; grid: {out / 'best.png'}" if (out / "best.png").is_file() else "; no valid molecule yet, so no grid"
    print(f"best molecules: {out / 'best.csv'}; progress: {out / 'progress.csv'}, {out / 'score.png'}{grid}")


def reinvent(args) -> None:
    from towerlab.generate.reinvent import Settings
    from towerlab.generate.reinvent import reinvent as run

    m, objective, s, out = _searching(args, "reinvent", Settings)
    history = run(m, objective, out, s)
    last = history[-1] if history else {}
    _print({**objective.counts(), "steps": last.get("step", 0), "best": last.get("best"), **_auc(out)})
    print(
        f"best molecules: {out / 'best.csv'}; every call: {out / 'calls.csv'}; per step: {out / 'progress.csv'}, "
        f"{out / 'score.png'}; grid: {out / 'best.png'}"
    )


def graph_ga(args) -> None:
    from towerlab.generate.graph_ga import Settings
    from towerlab.generate.graph_ga import graph_ga as run

    if args.run_dir:
        raise ConfigError(
            f"graph-ga uses no trained run (got {args.run_dir!r}); its first population is the best of --start FILE"
        )
    start = args.start or (
        os.environ.get("TOWERLAB_DATA", "") and str(Path(os.environ["TOWERLAB_DATA"]) / "zinc250k_jtvae" / "valid.txt")
    )
    if not start:
        raise ConfigError("graph-ga needs molecules to start from: --start FILE (SMILES), or set TOWERLAB_DATA")
    objective = _objective(args)
    s = _settings(Settings, args)
    out = _folder(args, Path("runs"), "graph-ga", s.seed)
    history = run(objective, start, out, s, args.start_limit)
    last = history[-1] if history else {}  # (a folder from before generation 0 was recorded may have none)
    _print({**objective.counts(), "generations": last.get("generation", 0), "best": last.get("best"), **_auc(out)})
    print(
        f"best molecules: {out / 'best.csv'}; per generation: {out / 'progress.csv'}, {out / 'score.png'}; "
        f"grid: {out / 'best.png'}"
    )


ACTIONS = {
    "sample": sample,
    "encode": encode,
    "decode": decode,
    "optimize": optimize,
    "hillclimb": hillclimb,
    "mcts": mcts,
    "reinvent": reinvent,
    "graph-ga": graph_ga,
}


def run(args) -> None:
    """The action the command names; every action but graph-ga reads a trained run."""
    if args.action != "graph-ga" and not args.run_dir:
        raise ConfigError(
            f"`towerlab chem {args.action}` needs the trained run: towerlab chem {args.action} RUN_DIR ..."
        )
    ACTIONS[args.action](args)
