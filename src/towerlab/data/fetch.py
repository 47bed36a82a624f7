"""Download the official dataset files and check their SHA-256 sums (`towerlab data fetch`)."""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
from pathlib import Path

from towerlab.errors import DataError

# SHA-256 of the official files, the same values torchvision and TensorFlow Datasets record.
SOURCES = {
    "mnist": [
        (
            "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        (
            "https://storage.googleapis.com/cvdf-datasets/mnist/train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        (
            "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        (
            "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ],
    "cifar10": [
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        ),
    ],
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, digest: str, dest: Path) -> Path:
    path = dest / url.rsplit("/", 1)[-1]
    if path.is_file() and sha256(path) == digest:
        return path
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        urllib.request.urlretrieve(url, tmp)
    except OSError as e:
        raise DataError(f"cannot download {url} ({e}); check the network or copy the file to {path} by hand") from None
    got = sha256(tmp)
    if got != digest:
        tmp.unlink()
        raise DataError(
            f"{url}: SHA-256 {got} does not match the official {digest}; the download is corrupt, try again"
        )
    tmp.replace(path)
    return path


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")  # the "data" filter refuses absolute paths and links out of dest


def fetch(name: str, dest: str | Path) -> Path:
    if name not in SOURCES:
        raise DataError(f"no download for {name!r}; known: {', '.join(SOURCES)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for url, digest in SOURCES[name]:
        path = _download(url, digest, dest)
        if path.name.endswith(".tar.gz"):
            _extract(path, dest)
    return dest
