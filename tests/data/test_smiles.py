"""SMILES files: CSV (plain or gzip) and one-per-line text; malformed files end in one clear line."""

import gzip
import math

import pytest

from towerlab.data import smiles
from towerlab.errors import DataError


def test_csv_with_blanks_and_text_with_scores(smiles_csv, tmp_path):
    t = smiles.read(smiles_csv)
    assert len(t.smiles) == 61 and list(t.columns) == ["NR-AR", "SR-p53"] and math.isnan(t.columns["SR-p53"][0])
    txt = tmp_path / "opt.logP-SA"
    txt.write_text("CCO 1.5\nc1ccccc1 -0.25\n")
    assert smiles.read(txt).columns["score"] == [1.5, -0.25]
    gz = tmp_path / "m.csv.gz"
    gz.write_bytes(gzip.compress(b"SMILES\nCCO\nCCN\n"))
    assert smiles.read(gz).smiles == ["CCO", "CCN"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("name,value\nx,1\n", "has no SMILES column"),
        ("smiles;NR-AR\nCCO;1\n", "is it separated by ';' or tabs"),
        ("smiles,NR-AR\nCCO,1,2\n", "line 2 has 3 fields"),
        ("smiles,NR-AR\nCCO,active\n", "column 'NR-AR' holds 'active', not a number"),
        ("smiles\n", "has a header but no molecules"),
    ],
)
def test_malformed_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        smiles.read(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        smiles.read(tmp_path / "none.csv")
    (tmp_path / "x.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a valid gzip file"):
        smiles.read(tmp_path / "x.csv.gz")


def test_csv_tsv_sdf_and_smi_with_names_read_the_same_molecules(shared_data, tmp_path):
    """The same real Tox21 rows as CSV, TSV, SDF (written and read by RDKit) and .smi with names."""
    from rdkit import Chem

    rows = (shared_data / "tox21" / "tox21.csv").read_text().splitlines()[:41]
    header = rows[0].split(",")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "t.tsv").write_text("\n".join(r.replace(",", "\t") for r in rows) + "\n")
    base = smiles.read(tmp_path / "t.csv")
    assert smiles.read(tmp_path / "t.tsv").columns == base.columns  # (a missing value is the one math.nan object)
    si = header.index("smiles")
    (tmp_path / "t.smi").write_text("".join(f"{r.split(',')[si]} mol{i}\n" for i, r in enumerate(rows[1:])))
    assert smiles.read(tmp_path / "t.smi").smiles == base.smiles and smiles.read(tmp_path / "t.smi").columns == {}
    with Chem.SDWriter(str(tmp_path / "t.sdf")) as w:
        for s_, ar in zip(base.smiles, base.columns["NR-AR"]):
            m = Chem.MolFromSmiles(s_)
            m.SetProp("_Name", "x")
            m.SetProp("compound", "a name, not a number")
            if not math.isnan(ar):
                m.SetProp("NR-AR", str(ar))
            w.write(m)
    with open(tmp_path / "t.sdf", "a") as f:
        f.write("not a molblock\n$$$$\n")
    sdf = smiles.read(tmp_path / "t.sdf")
    assert [Chem.CanonSmiles(s_) for s_ in base.smiles] == sdf.smiles and list(sdf.columns) == ["NR-AR"]
    same = [a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(sdf.columns["NR-AR"], base.columns["NR-AR"])]
    assert all(same)
