"""files.py: what every file and JSON line towerlab writes goes through."""

import json
import math
import os

from towerlab import files
from towerlab.runs import Run, RunRecord


def test_json_has_no_nan_and_metrics_files_stay_json(tmp_path):
    """Issue 43: NaN in final_metrics.json and printed JSON is not JSON (jq, browsers and databases refuse it)."""
    text = files.json_text({"auc": math.nan, "loss": math.inf, "curve": [1.0, -math.inf, 2], "name": "x"})
    assert json.loads(text) == {"auc": None, "loss": None, "curve": [1.0, None, 2], "name": "x"}
    from towerlab.recipes.configs import DigitsConfig

    run = Run(tmp_path / "run")
    try:
        run.open("digits", DigitsConfig())
        run.log(5, {"val/accuracy": math.nan, "train/loss": 1.0})
        run.write_final({"step": 5, "auc": math.nan, "best": {"value": math.nan}})
    finally:
        run.close()
    for name in ("metrics.jsonl", "final_metrics.json"):
        for line in (
            (tmp_path / "run" / name).read_text().splitlines()
            if name.endswith("l")
            else [(tmp_path / "run" / name).read_text()]
        ):
            json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN token
    from towerlab.runs.run import curve

    assert math.isnan(curve(tmp_path / "run", "accuracy")[0])
    assert RunRecord.load(tmp_path / "run").final["auc"] is None


def test_a_csv_cell_is_never_a_formula():
    assert [files.csv_cell(v) for v in ("=1+1", "+x", "-x", "@x", "\tx", "plain", -1.5, 3)] == [
        "'=1+1",
        "'+x",
        "'-x",
        "'@x",
        "'\tx",
        "plain",
        -1.5,
        3,
    ]


_NO_FLOCK = (
    "import errno, fcntl, os, sys, time\n"
    "def refuse(*a):\n"
    "    raise OSError(errno.ENOLCK, 'No locks available')\n"
    "fcntl.flock = refuse\n"  # a file system without flock (NFS without lockd, Lustre without -o flock)
    "{more}"
    "from towerlab.files import acquire_lock\n"
    "from pathlib import Path\n"
    "fd = acquire_lock(Path(sys.argv[1]))\n"
    "{check}"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


# asking who holds the folder must not drop the record lock this process holds (closing any fd of the file would)
_ASK = "from towerlab.files import holder\nassert holder(Path(sys.argv[1])) == os.getpid()\n"


def _locker(folder, seconds, more="", check=""):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", _NO_FLOCK.format(more=more, check=check), str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_folder_on_a_file_system_without_flock_is_still_locked_across_processes(tmp_path):
    """issue 46: where flock is refused, a POSIX record lock (what NFS and Lustre implement across machines) holds
    the folder; a second process is refused naming the first; the lock goes with the process."""
    first = _locker(tmp_path, 30, check=_ASK)
    try:
        assert first.stdout.readline().strip() == "held"
        second = _locker(tmp_path, 0)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0 and f"is being trained by process {first.pid}" in err
    finally:
        first.kill()
        first.wait()
    third = _locker(tmp_path, 0)
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0 and "held" in out and "warning" not in err  # the dead holder let go


def test_a_file_system_with_no_locks_at_all_is_said_once_and_the_work_goes_on(tmp_path):
    no_lockf = "fcntl.lockf = refuse\n"
    proc = _locker(tmp_path, 0, more=no_lockf)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "held" in out
    assert "refuses file locks" in err and "nothing stops a second process" in err


def _age(path, seconds: float = 10.0) -> None:
    """Set a folder's modification time into the past (a listing of a folder changed this instant is not kept)."""
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_a_folder_is_listed_once_and_walked_again_when_a_file_comes_or_goes(tmp_path, monkeypatch):
    """The file list of a large folder is cached with its folders' times: read back while nothing changed, walked
    again when a file is added (in a nested folder too), removed or renamed, or a folder is new."""
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(b"x")
    (root / "a" / ".hidden").write_bytes(b"x")
    for folder in (root, root / "a", root / "b"):
        _age(folder)
    first = files.walk_files(root)
    assert [p.relative_to(root).as_posix() for p in first] == [f"{c}/{i}.png" for c in "ab" for i in range(3)]

    walked = []
    real_walk = files._walk
    monkeypatch.setattr(files, "_walk", lambda root: walked.append(root) or real_walk(root))
    assert files.walk_files(root) == first and not walked  # read back: nothing walked

    (root / "b" / "3.png").write_bytes(b"x")  # a file added: its folder's time moved
    assert root / "b" / "3.png" in files.walk_files(root) and len(walked) == 1
    (root / "a" / "0.png").unlink()
    assert root / "a" / "0.png" not in files.walk_files(root) and len(walked) == 2
    (root / "a" / "deep").mkdir()
    _age(root / "a")
    (root / "a" / "deep" / "x.png").write_bytes(b"x")
    assert root / "a" / "deep" / "x.png" in files.walk_files(root)
    (root / "a" / "deep" / "y.png").write_bytes(b"x")  # only the nested folder changed
    assert root / "a" / "deep" / "y.png" in files.walk_files(root)
    (root / "b" / "1.png").write_bytes(b"changed")  # contents are the data hash's business, not the listing's
    assert files.walk_files(root) == sorted(real_walk_files(root))


def real_walk_files(root):
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


def test_a_kept_listing_that_names_a_path_outside_its_folder_is_walked_again(tmp_path):
    """The cached list is a file anyone with the cache folder can edit: an entry with '..' or an absolute path
    makes it ignored (the folder walked again), so it can never make training read outside --data."""
    root, secret = tmp_path / "data", tmp_path / "secret.png"
    (root / "a").mkdir(parents=True)
    (root / "a" / "0.png").write_bytes(b"x")
    secret.write_bytes(b"x")
    for folder in (root, root / "a"):
        _age(folder)
    assert files.walk_files(root) == [root / "a" / "0.png"]
    listing = files._listing_file(root)
    for planted in ("../secret.png", str(secret)):
        kept = json.loads(listing.read_text())
        kept["files"].append(planted)
        listing.write_text(json.dumps(kept))
        assert files.walk_files(root) == [root / "a" / "0.png"]
