import pickle

import numpy as np
import pytest

from towerlab.data import cifar
from towerlab.errors import DataError

from helpers import write_cifar_python_batch


def test_binary_reads_every_training_batch(cifar_bin_dir):
    x, y = cifar.load_split(cifar_bin_dir, "train")
    assert x.shape == (64, 3, 32, 32) and y.shape == (64,)
    x, y = cifar.load_split(cifar_bin_dir, "test")
    assert x.shape == (20, 3, 32, 32)


def test_binary_record_layout(tmp_path):
    # one record: label 7, then the R, G and B planes
    rec = np.concatenate([[7], np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    (tmp_path / "test_batch.bin").write_bytes(rec.tobytes())
    x, y = cifar.load_split(tmp_path, "test")
    assert y.tolist() == [7] and x[0, :, 5, 5].tolist() == [10, 20, 30]


def test_truncated_binary_names_the_file(cifar_bin_dir):
    path = cifar_bin_dir / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="test_batch.bin: .* not a whole number of 3073-byte"):
        cifar.load_split(cifar_bin_dir, "test")


def test_python_version_through_the_restricted_unpickler(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data, labels = write_cifar_python_batch(folder / "data_batch_1", 12, 0)
    write_cifar_python_batch(folder / "test_batch", 5, 1)
    x, y = cifar.load_split(tmp_path, "train")
    assert y.tolist() == labels
    assert np.array_equal(x.numpy().reshape(12, -1), data)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/towerlab-pwned",))


def test_python_version_refuses_code(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="refusing to load global .*system"):
        cifar.read_python_batch(path)


def test_python_version_checks_the_arrays(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=r"uint8 array \[N, 3072\]"):
        cifar.read_python_batch(path)


def test_no_cifar_here(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 data under"):
        cifar.load_split(tmp_path, "test")


def test_real_cifar_binary(shared_data):
    x, y = cifar.load_split(shared_data / "cifar10", "train")
    assert x.shape == (1000, 3, 32, 32)  # N from the file size
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the official data_batch_1 begins so
    _, y = cifar.load_split(shared_data / "cifar10", "test")
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
