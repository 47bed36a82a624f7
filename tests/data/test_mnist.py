import numpy as np
import pytest
import torch

from towerlab.data import mnist
from towerlab.errors import DataError


def test_reads_gzipped_and_plain_idx(mnist_dir):
    x, y = mnist.load_split(mnist_dir, "train")  # gzipped
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.uint8 and y.shape == (64,) and y.dtype == torch.int64
    x, y = mnist.load_split(mnist_dir, "test")  # plain
    assert x.shape == (32, 1, 28, 28)


def test_truncated_file_names_the_file(mnist_dir):
    path = mnist_dir / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*header says shape"):
        mnist.load_split(mnist_dir, "test")


def test_corrupt_gzip_names_the_file(mnist_dir):
    path = mnist_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: corrupt gzip"):
        mnist.load_split(mnist_dir, "train")


def test_wrong_magic(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="bad magic number"):
        mnist.load_split(mnist_dir, "test")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz not found"):
        mnist.load_split(tmp_path, "train")


def test_count_mismatch(mnist_dir):
    labels = np.zeros(31, dtype=np.uint8)
    (mnist_dir / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (31).to_bytes(4, "big") + labels.tobytes())
    with pytest.raises(DataError, match="32 images but .* 31 labels"):
        mnist.load_split(mnist_dir, "test")


def test_real_mnist_counts_come_from_the_header(shared_data):
    train_x, train_y = mnist.load_split(shared_data / "mnist", "train")
    test_x, test_y = mnist.load_split(shared_data / "mnist", "test")
    assert len(train_x) == 10_000 and len(test_x) == 10_000  # fewer than 60,000: read, not assumed
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the canonical first labels
    assert test_y[:5].tolist() == [7, 2, 1, 0, 4]
    assert test_x.float().mean().item() == pytest.approx(33.79, abs=0.1)  # canonical mean pixel of t10k
