"""Molecule generation against the published figures (CPU budgets, stated). Never part of `make test`.

    TOWERLAB_DATA=../shared/data python bench/chem_generation.py prior RUN [--n 10000]
    TOWERLAB_DATA=../shared/data python bench/chem_generation.py autoencoders [--steps 1500] [--models NAME ...]

prior: 10,000 molecules of a smiles-lstm run: validity, unique@10k, novelty (against the run's training split and
against the MOSES train file, sizes printed), FCD against the MOSES test set (fcd_torch), GuacaMol's KL score;
beside MOSES's CharRNN / VAE / AAE (molecularsets/moses README). The samples are kept as CSV.
autoencoders: AE (chemvae, beta 0), VAE, VAE + property head and AAE (chemaae, both training schemes: joint, and
alternating as MOSES trains it), one encoder and decoder, the same
ZINC data, steps, batch and learning rate: reconstruction of held-out molecules, prior samples' validity,
uniqueness, novelty and FCD. Writes bench/out/chem/<what>.json, and every decoded sample
to docs/samples/autoencoders_<steps>steps.csv.
The optimisers (hill-climb, ChemTS, the graph GA) are measured by bench/mol_design.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("bench/out/chem")
SAMPLES = Path("docs/samples")
DATA = Path(os.environ.get("TOWERLAB_DATA", "../shared/data"))
MOSES_TEST = DATA / "moses" / "test.csv.gz"
MOSES_TRAIN = DATA / "moses" / "train.csv.gz"
MOSES_README = {"CharRNN": (0.960, 0.999, 0.323), "VAE": (0.953, 0.999, 0.254), "AAE": (0.934, 1.000, 1.351)}


def _machine() -> str:
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _save(name: str, report: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(["python", *sys.argv]), "machine": _machine(), **report}
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {OUT / f'{name}.json'}")


def _metrics(smiles: list[str], training: list[str], reference: bool = True) -> dict:
    from towerlab.chem import distribution

    return distribution.report(
        smiles,
        training,
        k=10_000,
        reference=str(MOSES_TRAIN) if reference else None,
        fcd_reference=str(MOSES_TEST),
        kl=True,
    )


def prior(args) -> None:
    from towerlab.generate import model as gen
    from towerlab.generate.outputs import write_csv

    m = gen.load(args.run)
    t0 = time.time()
    smiles = gen.sample(m, args.n, seed=args.seed)
    sample_s = time.time() - t0
    write_csv([gen.describe(s) for s in smiles], OUT / "prior_samples.csv")
    r = _metrics(smiles, gen.training_smiles(m))
    r["sample_s"] = sample_s
    print(
        f"| model | valid | unique@10k | novelty (train split, {r['training_set_size']:.0f}) | novelty (MOSES train "
        f"file, {r['reference_set_size']:.0f}) | FCD/test | KL score |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| towerlab smiles-lstm ({args.run}) | {r['validity']:.3f} | {r['unique@10000']:.3f} | {r['novelty']:.3f} | "
        f"{r['novelty_vs_reference']:.3f} | {r['fcd']:.3f} | {r['kl_score']:.3f} |"
    )
    for name, (v, u, f) in MOSES_README.items():
        print(f"| MOSES {name} (README; 1.6M training molecules) | {v} | {u} | - | - | {f} | - |")
    _save("prior", {"run": args.run, "n": args.n, "metrics": r, "samples": str(OUT / "prior_samples.csv")})


AUTOENCODERS = {
    "AE": ("chemvae", ["--beta", "0", "--properties", ""]),
    "VAE": ("chemvae", ["--properties", ""]),
    "VAE + property head": ("chemvae", ["--properties", "qed,logp"]),
    "AAE": ("chemaae", []),
    "AAE, MOSES scheme": ("chemaae", ["--scheme", "moses"]),
}


def _hand_in(steps: int, decoded: dict[str, list[str]]) -> None:
    """Every prior sample behind the table, as decoded (RDKit recomputes validity, uniqueness and the rest)."""
    path = SAMPLES / f"autoencoders_{steps}steps.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "smiles"])
        for name, smiles in decoded.items():
            w.writerows([name, s] for s in smiles)
    print(f"samples: {path}")


def autoencoders(args) -> None:
    from towerlab.generate import latent
    from towerlab.generate import model as gen
    from towerlab.generate.outputs import write_csv

    common = [
        "--data",
        str(DATA / "zinc250k_jtvae" / "valid.txt"),
        "--max-steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--max-len",
        str(args.max_len),
        "--encoder",
        "conv1d",
        "--latent",
        "56",
        "--gru-hidden",
        str(args.gru_hidden),
        "--eval-every-steps",
        str(args.steps),
        "--eval-limit",
        "1000",
        "--auto-resume",
    ]  # a model cut off mid-training continues from its last checkpoint on a re-run
    held_out = (DATA / "zinc250k_jtvae" / "test.txt").read_text().split()[:500]
    rows, decoded = {}, {}
    print(
        "| model | token accuracy (held out) | same molecule back (test.txt) | validity | unique | novelty | "
        "FCD/MOSES test | KL score |\n|---|---|---|---|---|---|---|---|"
    )
    for name in args.models:
        recipe, extra = AUTOENCODERS[name]
        run = OUT / "autoencoders" / name.replace(" ", "_").replace("+", "plus").replace(",", "")
        if not (run / "final_metrics.json").is_file():
            t0 = time.time()
            warmup = ["--kl-warmup-steps", str(args.steps // 2)] if recipe == "chemvae" else []
            subprocess.run(
                [sys.executable, "-m", "towerlab", "train", recipe, *common, *extra, *warmup, "--out", str(run)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            (run / "bench_train_s.txt").write_text(f"{time.time() - t0:.1f}")
        m = gen.load(run)
        _, recon = latent.encode_file(m, held_out)
        smiles = decoded[name] = gen.sample(m, args.n, seed=0)
        write_csv([gen.describe(s) for s in smiles], run / "bench_samples.csv")
        r = _metrics(smiles, gen.training_smiles(m), reference=False)
        final = json.loads((run / "final_metrics.json").read_text())
        accuracy = next(v for k, v in final.items() if k.split("/")[-1] == "recon_token_accuracy")  # val/...
        rows[name] = {
            "token_accuracy_held_out": accuracy,
            "reconstruction_same_molecule": recon["same_molecule"],
            **r,
            "train_s": float((run / "bench_train_s.txt").read_text()),
            "samples": str(run / "bench_samples.csv"),
        }
        print(
            f"| {name} | {rows[name]['token_accuracy_held_out']:.3f} | {recon['same_molecule']:.3f} | "
            f"{r['validity']:.3f} | {r[f'unique@{args.n}']:.3f} | {r['novelty']:.3f} | {r['fcd']:.2f} | "
            f"{r['kl_score']:.3f} |",
            flush=True,
        )
    _hand_in(args.steps, decoded)
    _save(
        "autoencoders", {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "n": args.n, "models": rows}
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("prior")
    a.add_argument("run")
    a.add_argument("--n", type=int, default=10_000)
    a.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("autoencoders")
    a.add_argument("--steps", type=int, default=1500)
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--n", type=int, default=1000)
    a.add_argument("--max-len", type=int, default=100)
    a.add_argument("--gru-hidden", type=int, default=256, help="(Gomez-Bombarelli: 488; 256 to fit a CPU budget)")
    a.add_argument(
        "--models",
        nargs="+",
        choices=list(AUTOENCODERS),
        default=list(AUTOENCODERS),
        metavar="NAME",
        help=f"which of {', '.join(AUTOENCODERS)} (default: all; a trained one is read back)",
    )
    args = p.parse_args()
    {"prior": prior, "autoencoders": autoencoders}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
