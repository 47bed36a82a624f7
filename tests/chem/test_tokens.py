"""The SMILES tokenizer on every molecule of the real Tox21, MOSES and ZINC files."""

import pytest

from towerlab.chem.tokens import END, Skipped, Vocab, tokenize
from towerlab.data import smiles as smiles_data

FILES = ["tox21/tox21.csv", "moses/test.csv.gz", "moses/train.csv.gz", "zinc250k_jtvae/valid.txt",
         "zinc250k_jtvae/test.txt"]


@pytest.mark.parametrize("name", FILES)
def test_round_trip_of_every_real_molecule(shared_data, name):
    smiles = smiles_data.read(shared_data / name).smiles
    assert len(smiles) >= 5000
    vocab = Vocab.build(smiles, max_len=max(len(tokenize(s)) for s in smiles))
    tokens, kept = vocab.encode(smiles)
    assert len(kept) == len(smiles)  # every molecule tokenizes completely
    assert vocab.decode(tokens) == smiles


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
