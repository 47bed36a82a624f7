"""Distribution metrics: novelty against a reference set with its size, the FCD (fcd_torch), GuacaMol's KL score."""

import pytest

from towerlab.chem import distribution


def _lines(path, n):
    return path.read_text().split()[:n]


def test_novelty_against_a_reference_set_with_both_sizes(shared_data, tmp_path):
    zinc = _lines(shared_data / "zinc250k_jtvae" / "test.txt", 300)
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(zinc[:200]) + "\n")
    generated = zinc[100:300]  # half of them are in the reference, none in the "training set"
    report = distribution.report(generated, training=zinc[250:], reference=str(ref))
    assert report["novelty_vs_reference"] == pytest.approx(0.5)
    assert report["reference_set_size"] == 200 and report["training_set_size"] == 50
    assert report["novelty"] == pytest.approx(150 / 200)


def test_fcd_is_zero_for_the_same_set_and_larger_for_another(shared_data, tmp_path):
    pytest.importorskip("fcd_torch", reason="the optional generate extra")
    zinc = _lines(shared_data / "zinc250k_jtvae" / "test.txt", 400)
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(zinc[:200]) + "\n")
    same = distribution.fcd(zinc[:200], ref)
    other = distribution.fcd(["C" * (i % 8 + 1) + "O" for i in range(200)], ref)
    assert abs(same) < 1e-3 and other > 10 * max(abs(same), 1.0)
    assert distribution._cache(ref, "fcd", ".npz").is_file()  # the reference's statistics, cached as .npz


def test_kl_score_is_one_for_the_training_distribution(shared_data):
    pytest.importorskip("guacamol", reason="the optional guacamol extra")
    from towerlab.chem.guacamol_adapter import kl_score

    zinc = _lines(shared_data / "zinc250k_jtvae" / "test.txt", 1000)
    assert kl_score(zinc[:500], zinc[500:]) > 0.9
    chains = ["C" * k + "O" * j + "C" * i for k in range(1, 31) for j in range(3) for i in range(2)]
    assert kl_score(chains, zinc) < 0.3
    assert kl_score(["CCO"] * 50, zinc) != kl_score(["CCO"] * 50, zinc)  # too alike to estimate: nan, not a crash
