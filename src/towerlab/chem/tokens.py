"""Molecules as token sequences. SMILES: one token per atom (Cl, Br, [nH], [C@@H]), bond, branch or ring closure
(%10). SELFIES (Krenn et al. 2020): one token per bracketed symbol ([C], [=O], [Branch1], [Ring1]); every sequence
of SELFIES tokens decodes to a valid molecule, so a generator that writes SELFIES never writes an invalid one.

The vocabulary is built from the training set and saved in the run directory (vocab.json, with its representation),
so a run decodes what it was trained on. Index 0 is the end/padding token: a sequence is its tokens, then 0 up to
max_len. A molecule the vocabulary cannot express, or longer than max_len, is reported and skipped, never truncated.
Both directions take and give SMILES: the representation is the vocabulary's business only.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from towerlab.errors import DataError
from towerlab.progress import bar

# bracket atoms, two-letter organic-subset atoms, aromatic atoms, bonds, branches, ring closures (Schwaller et al.)
PATTERN = re.compile(
    r"(\[[^\]]+\]|Br|Cl|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)
END = "<end>"


REPRESENTATIONS = ("smiles", "selfies")


def tokenize(smiles: str, representation: str = "smiles") -> list[str] | None:
    """Tokens of a SMILES (or of its SELFIES), or None when it cannot be written as tokens: characters that match no
    token (the regex must cover the whole string), or a molecule the SELFIES encoder refuses."""
    if representation == "selfies":
        import selfies

        try:
            return list(selfies.split_selfies(selfies.encoder(smiles)))
        except selfies.EncoderError:
            return None
    tokens = PATTERN.findall(smiles)
    return tokens if "".join(tokens) == smiles else None


def detokenize(tokens: list[str], representation: str = "smiles") -> str:
    """Tokens -> SMILES (a SELFIES sequence is decoded by the selfies library: always a valid molecule or empty)."""
    if representation == "selfies":
        import selfies

        return selfies.decoder("".join(tokens)) or ""
    return "".join(tokens)


@dataclass
class Skipped:
    """What could not be encoded, with a few examples for the report."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, smiles: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(smiles)

    def report(self) -> str:
        return "; ".join(f"{n} {reason} (e.g. {', '.join(self.examples[reason])})" for reason, n in self.counts.items())


class Vocab:
    def __init__(self, tokens: list[str], max_len: int, representation: str = "smiles"):
        if not tokens or tokens[0] != END:
            tokens = [END, *[t for t in tokens if t != END]]
        if representation not in REPRESENTATIONS:
            raise DataError(f"representation {representation!r} is not one of {', '.join(REPRESENTATIONS)}")
        self.tokens, self.max_len, self.representation = tokens, max_len, representation
        self.index = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, smiles: list[str], max_len: int, representation: str = "smiles") -> Vocab:
        """Every token of every molecule that fits in max_len, most frequent first (ties alphabetical)."""
        counts = Counter(
            t for s in smiles if (toks := tokenize(s, representation)) and len(toks) <= max_len for t in toks
        )
        return cls([END, *sorted(counts, key=lambda t: (-counts[t], t))], max_len, representation)

    def encode(
        self, smiles: list[str], skipped: Skipped | None = None, dtype: torch.dtype = torch.int64
    ) -> tuple[torch.Tensor, list[int]]:
        """[N, max_len] token indices (0-padded) of the SMILES that fit, and their positions in the input. Written
        row by row into one array of `dtype` (uint8 for a corpus: corpus.compact), so a corpus of millions never
        passes through a list of Python ints or an int64 copy."""
        out, kept = torch.zeros(len(smiles), self.max_len, dtype=dtype), []
        for i, s in enumerate(bar(smiles, "tokenizing", unit="mol", min_total=20_000)):
            toks = tokenize(s, self.representation)
            if toks is not None and len(toks) > self.max_len:
                reason = f"longer than max_len={self.max_len} tokens"
            elif toks is None and self.representation == "selfies":
                reason = "that SELFIES cannot encode"
            elif toks is None or any(t not in self.index for t in toks):
                reason = "with characters outside the vocabulary"
            else:
                if toks:
                    out[len(kept), : len(toks)] = torch.tensor([self.index[t] for t in toks], dtype=dtype)
                kept.append(i)
                continue
            if skipped is not None:
                skipped.add(reason, s)
        return out[: len(kept)].clone() if len(kept) < len(smiles) else out, kept

    def decode(self, indices: torch.Tensor) -> list[str]:
        """[N, L] token indices -> SMILES strings (each ends at its first end token)."""
        out = []
        for row in indices.tolist():
            tokens = []
            for i in row:
                if i == 0:
                    break
                tokens.append(self.tokens[i])
            out.append(detokenize(tokens, self.representation))
        return out

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {"max_len": self.max_len, "representation": self.representation, "tokens": self.tokens}, indent=1
            )
        )

    @classmethod
    def load(cls, path: Path) -> Vocab:
        if not path.is_file():
            raise DataError(f"{path} not found: the run directory has no vocabulary (was it trained by chemvae?)")
        data = json.loads(path.read_text())
        return cls(data["tokens"], data["max_len"], data.get("representation", "smiles"))


def pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """[N, V] logits -> [N] tokens: the most probable at temperature 0, else drawn from softmax(logits / T) (with
    `generator`, on the CPU, so that a seed gives the same molecules on any device)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if generator is not None:
        return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(logits.device)
    return torch.multinomial(probs, 1)[:, 0]
