"""REINVENT's diversity filters: a molecule whose scaffold has already been rewarded `bucket_size` times scores 0,
so the agent is pushed to new chemotypes instead of sampling one good scaffold forever (Blaschke et al. 2020).

    identical_murcko       the Bemis-Murcko scaffold (rings and linkers)
    identical_topological  the same scaffold made generic (every atom carbon, every bond single)
    penalize_same_smiles   no buckets: a molecule sampled again scores `penalty` times its score
    none                   scores pass unchanged

Only molecules scoring at least `min_score` fill a bucket (a poor molecule spends no room). The filter's state is
a dict of counts, kept in the search's checkpoint."""

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
    counts: dict[str, int] = field(default_factory=dict)  # scaffold (or SMILES) -> molecules rewarded

    def __call__(self, smiles: str, score: float) -> float:
        """The score the agent learns from for one sampled molecule (canonical SMILES), and the filter updated."""
        if self.kind == "none":
            return score
        if self.kind == "penalize_same_smiles":
            seen = self.counts.get(smiles, 0)
            self.counts[smiles] = seen + 1
            return score * self.penalty if seen else score
        key = scaffold(smiles, self.kind == "identical_topological")
        if score < self.min_score:
            return score
        if self.counts.get(key, 0) >= self.bucket_size:
            return 0.0
        self.counts[key] = self.counts.get(key, 0) + 1
        return score

    def full(self, smiles: str) -> bool:
        """Whether this molecule's bucket is full (it would score 0): Augmented Memory purges such molecules from the
        replay memory, so that replay does not keep pulling the agent back to an exhausted scaffold."""
        if self.kind in ("none", "penalize_same_smiles"):
            return False
        return self.counts.get(scaffold(smiles, self.kind == "identical_topological"), 0) >= self.bucket_size
