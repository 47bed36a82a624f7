"""The SMILES and SELFIES tokenizers on every molecule of the real Tox21, MOSES and ZINC files."""

import pytest
import torch

from towerlab.chem import props
from towerlab.chem.tokens import END, Skipped, Vocab, tokenize
from towerlab.data import smiles as smiles_data

FILES = [
    "tox21/tox21.csv",
    "moses/test.csv.gz",
    "moses/train.csv.gz",
    "zinc250k_jtvae/valid.txt",
    "zinc250k_jtvae/test.txt",
]


@pytest.mark.parametrize("name", FILES)
def test_round_trip_of_every_real_molecule(shared_data, name):
    smiles = smiles_data.read(shared_data / name).smiles
    assert len(smiles) >= 5000
    vocab = Vocab.build(smiles, max_len=max(len(tokenize(s)) for s in smiles))
    tokens, kept = vocab.encode(smiles)
    assert len(kept) == len(smiles)  # every molecule tokenizes completely
    assert vocab.decode(tokens) == smiles


@pytest.mark.parametrize("name", ["tox21/tox21.csv", "zinc250k_jtvae/test.txt"])
def test_selfies_round_trip_to_the_same_molecule(shared_data, name, tmp_path):
    smiles = [s for s in smiles_data.read(shared_data / name).smiles if props.mol(s) is not None]
    vocab = Vocab.build(smiles, max_len=400, representation="selfies")
    assert all(t == "." or t.startswith("[") and t.endswith("]") for t in vocab.tokens[1:])  # "." joins fragments
    tokens, kept = vocab.encode(smiles)
    assert len(kept) == len(smiles)
    decoded = vocab.decode(tokens)  # SMILES again, written by the selfies decoder
    assert [props.canonical(s) for s in decoded] == [props.canonical(s) for s in smiles]
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").representation == "selfies"


def test_any_selfies_token_sequence_is_a_molecule(shared_data):
    """For the organic atoms of ZINC, random token rows decode to valid SMILES (or nothing, if all end). Not so
    for Tox21's metal salts: SELFIES guarantees valence only for the atoms its constraints know."""
    smiles = smiles_data.read(shared_data / "zinc250k_jtvae/valid.txt").smiles
    vocab = Vocab.build(smiles, max_len=200, representation="selfies")
    rows = torch.randint(0, len(vocab), (2000, 30), generator=torch.Generator().manual_seed(0))
    decoded = vocab.decode(rows)
    assert all(s == "" or props.mol(s) is not None for s in decoded) and sum(s != "" for s in decoded) > 1900


def test_multi_character_atoms_are_single_tokens():
    assert tokenize("Clc1cc[nH]c1Br") == ["Cl", "c", "1", "c", "c", "[nH]", "c", "1", "Br"]
    assert tokenize("C[C@@H](N)C%10CC%10") == ["C", "[C@@H]", "(", "N", ")", "C", "%10", "C", "C", "%10"]
    assert tokenize("C1CC1!") is None  # a character no token covers


def test_unexpressible_and_too_long_are_reported_and_skipped(tmp_path):
    vocab = Vocab.build(["CCO", "CCN"], max_len=4)
    skipped = Skipped()
    tokens, kept = vocab.encode(["CCO", "CCCCCO", "CCCl", "NCC"], skipped)
    assert kept == [0, 3] and tokens.shape == (2, 4) and tokens[0, 3] == 0
    assert skipped.counts == {"longer than max_len=4 tokens": 1, "with characters outside the vocabulary": 1}
    assert "CCCl" in skipped.report()
    vocab.save(tmp_path / "vocab.json")
    again = Vocab.load(tmp_path / "vocab.json")
    assert again.tokens == vocab.tokens and again.tokens[0] == END
