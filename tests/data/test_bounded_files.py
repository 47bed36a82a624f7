"""Data and config files whose declared size is out of proportion are refused in one line naming the size, before
they are expanded (issue 24): a pickle chaining codecs, an MNIST gzip whose header claims a gigabyte, a YAML file of
nested aliases. Each runs in a fresh process whose peak memory is measured."""

import codecs
import gzip
import pickle
import struct
import subprocess
import sys
import textwrap

import pytest

from towerlab.errors import ConfigError, DataError


def _peak_mb(code: str) -> tuple[int, str, float]:
    """Run code in a fresh interpreter after importing towerlab's readers (torch among them); (exit code, stderr,
    how many MB its peak resident memory grew by while the code ran)."""
    head = "import resource, sys\nimport towerlab.data.mnist, towerlab.data.cifar\n"
    head += "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    tail = "\ngrew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
    tail += "sys.stderr.write(f'\\nPEAK {grew:.0f}\\n')\n"
    proc = subprocess.run(
        [sys.executable, "-c", head + textwrap.dedent(code) + tail], capture_output=True, text=True, timeout=120
    )
    peak = float(proc.stderr.rsplit("PEAK ", 1)[1]) if "PEAK " in proc.stderr else float("nan")
    return proc.returncode, proc.stderr, peak


class _Codec:
    """Pickles as _codecs.encode(text, codec): what a crafted batch chains to grow."""

    def __init__(self, text, codec):
        self.args = (text, codec)

    def __reduce__(self):
        return codecs.encode, self.args


@pytest.mark.parametrize("codec", ["hex", "base64", "zlib", "rot13", "utf-16"])
def test_a_pickle_calling_any_codec_but_latin1_is_refused(tmp_path, codec):
    from towerlab.data.cifar import read_python_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Codec("41" * 10, codec), b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match="refusing _codecs.encode with encoding"):
        read_python_batch(path)


def test_a_protocol_2_batch_written_by_python_3_still_loads(tmp_path):
    """Python 3 pickles bytes at protocol 2 as _codecs.encode(str, 'latin1'): the one call a real batch needs."""
    from towerlab.data.cifar import read_python_batch

    from helpers import write_cifar_python_batch

    data, labels = write_cifar_python_batch(tmp_path / "b", 5, 0)
    assert b"_codecs" in (tmp_path / "b").read_bytes()
    images, got = read_python_batch(tmp_path / "b")
    assert (images.reshape(5, -1) == data).all() and got.tolist() == labels


def test_an_mnist_gzip_whose_header_claims_a_gigabyte_is_refused_before_expanding(tmp_path):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 1_000_000, 32, 32)  # 1 GB claimed
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(200_000_000), compresslevel=9))  # really expands to 200 MB
    assert path.stat().st_size < 1_000_000
    rc, err, peak = _peak_mb(f"""
        from towerlab.data.mnist import read_idx
        from towerlab.errors import DataError
        try:
            read_idx({str(path)!r})
        except DataError as e:
            print(e, file=__import__('sys').stderr)
    """)
    assert "1,024,000,000 bytes" in err and "out of proportion" in err, err
    assert peak < 100, f"memory grew by {peak} MB: the file was expanded"


def test_an_idx_file_longer_than_its_header_is_refused(tmp_path):
    from towerlab.data.mnist import read_idx

    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 4) + bytes(10)))
    with pytest.raises(DataError, match="holds more than 4 bytes"):
        read_idx(path)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)


def test_a_yaml_file_of_nested_aliases_is_refused_in_one_short_line(tmp_path):
    from helpers import run_cli

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB + "lr: *i\n")
    assert len(BOMB) < 600
    proc = run_cli("train", "digits", "--config", str(bomb), "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and len(proc.stderr) < 400 and "aliases expand" in proc.stderr, proc.stderr[:400]
    for name in ("jobs.yaml", "space.yaml", "serve.yaml"):  # every YAML the project reads goes through one loader
        (tmp_path / name).write_text(BOMB)
    assert run_cli("jobs", "run", str(tmp_path / "jobs.yaml"), check=False).stderr.count("aliases expand") == 1
    assert "aliases expand" in run_cli("search", "mlp", "--space", str(tmp_path / "space.yaml"), check=False).stderr
    assert "aliases expand" in run_cli("serve", str(tmp_path / "serve.yaml"), "--once", check=False).stderr


def test_a_few_aliases_still_load(tmp_path):
    from towerlab.config import load_yaml

    p = tmp_path / "ok.yaml"
    p.write_text("base: &b {lr: 0.1, epochs: 2}\nother: *b\n")
    assert load_yaml(p) == {"base": {"lr": 0.1, "epochs": 2}, "other": {"lr": 0.1, "epochs": 2}}
    p.write_text("a: &a [1]\nb: !!python/object/apply:os.system [echo]\n")
    with pytest.raises(ConfigError):
        load_yaml(p)


def test_a_wrong_value_is_quoted_short(tmp_path):
    from towerlab import config
    from towerlab.recipes.configs import DigitsConfig

    with pytest.raises(ConfigError) as e:
        config.merge(DigitsConfig(), {"lr": list(range(100_000))}, "x.yaml")
    assert len(str(e.value)) < 200
