"""The digits dataset is read from scikit-learn's own file without importing scikit-learn: the same images and
labels as load_digits(), in its order, and no scikit-learn (scipy, pandas) in a digits process."""

import subprocess
import sys

import numpy as np


def test_the_arrays_are_load_digits():
    from sklearn.datasets import load_digits

    from towerlab.data import digits

    images, labels = digits.load_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    train, test = digits.load_split("train"), digits.load_split("test")
    assert len(train[1]) == 1797 - 360 and len(test[1]) == 360 and train[0].dtype == test[0].dtype
    assert int(train[0].max()) == 255 and sorted(set(test[1].tolist())) == list(range(10))


def test_loading_digits_does_not_import_scikit_learn():
    code = (
        "import sys; from towerlab.data import digits; digits.load_split('train'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas', 'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_a_missing_scikit_learn_or_digits_file_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    import importlib.machinery
    import importlib.util

    import pytest

    from towerlab.data import digits
    from towerlab.errors import DataError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        digits._file()
    spec = importlib.machinery.ModuleSpec("sklearn", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]  # an install whose data folder is gone
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(DataError, match=f"{tmp_path}/datasets/data/digits.csv.gz .* is missing; fix: pip install"):
        digits._file()
