"""REINVENT's diversity filters: a molecule whose scaffold has already been rewarded `bucket_size` times scores 0,
so the agent is pushed to new chemotypes instead of sampling one good scaffold forever (Blaschke et al. 2020).

    identical_murcko       the Bemis-Murcko scaffold (rings and linkers)
    identical_topological  the same scaffold made generic (every atom carbon, every bond single)
    penalize_same_smiles   no buckets: a molecule sampled again scores `penalty` times its score
    none                   scores pass unchanged

Only molecules scoring at least `min_score` fill a bucket (a poor molecule spends no room), and a molecule sampled
again takes no second place in it. The filter's state (each bucket's molecules) is kept in the search's
checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("identical_murcko", "identical_topological", "penalize_same_smiles", "none")


def scaffold(smiles: str, generic: bool) -> str:
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    core = MurckoScaffold.GetScaffoldForMol(Chem.MolFromSmiles(smiles))
    if generic:
        core = MurckoScaffold.MakeScaffoldGeneric(core)
    return Chem.MolToSmiles(core)  # "" for an acyclic molecule: all of them share one bucket, as in REINVENT


@dataclass
class DiversityFilter:
    kind: str = "identical_murcko"
    bucket_size: int = 25
    min_score: float = 0.4
    penalty: float = 0.5
    counts: dict[str, list[str]] = field(
        default_factory=dict
    )  # scaffold -> the molecules it rewarded (or SMILES -> [] once seen)

    def __call__(self, smiles: str, score: float) -> float:
        """The score the agent learns from for one sampled molecule (canonical SMILES), and the filter updated."""
        if self.kind == "none":
            return score
        if self.kind == "penalize_same_smiles":
            seen = smiles in self.counts
            self.counts[smiles] = []
            return score * self.penalty if seen else score
        if score < self.min_score:
            return score
        bucket = self.counts.setdefault(scaffold(smiles, self.kind == "identical_topological"), [])
        if len(bucket) >= self.bucket_size:
            return 0.0
        if smiles not in bucket:
            bucket.append(smiles)
        return score

    def full(self, smiles: str) -> bool:
        """Whether this molecule's bucket is full (it would score 0): Augmented Memory purges such molecules from the
        replay memory, so that replay does not keep pulling the agent back to an exhausted scaffold."""
        if self.kind in ("none", "penalize_same_smiles"):
            return False
        return len(self.counts.get(scaffold(smiles, self.kind == "identical_topological"), [])) >= self.bucket_size
