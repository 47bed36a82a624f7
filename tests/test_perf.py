"""towerlab.perf: the host allocator setting (measured in page faults) and what --fast chooses for the device."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from towerlab import config, perf
from towerlab.errors import ConfigError
from towerlab.recipes.configs import MnistConfig

from helpers import run_cli

# allocate and free a 50 MB tensor, as a training step does with its activations; count the minor page faults of
# each step and print the median: a step that faults is the default's every step, while a single step that grows
# the heap once more (seen under a loaded machine: one step in ten, 12,800 faults) is not what the setting is about
_FAULTS = textwrap.dedent("""
    import resource, statistics, sys, torch
    from towerlab import perf
    applied = perf.keep_freed_memory() if sys.argv[1] == "keep" else False
    for _ in range(10):  # warm-up: the first allocations fault in either case while the heap grows
        x = torch.ones(50 * 2**18); del x
    faults = []
    for _ in range(10):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(50 * 2**18); del x
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(applied, statistics.median(faults))
""")


def _faults(mode: str, env: dict | None = None) -> tuple[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_keeping_freed_memory_removes_the_page_faults_of_every_step():
    applied, kept = _faults("keep")
    _, default = _faults("default")
    assert applied == "True"
    assert default > 10_000  # glibc hands the 50 MB back and faults all 12,800 pages in again
    assert kept < 100


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_an_allocator_the_user_chose_is_left_alone():
    applied, faults = _faults("keep", {"MALLOC_TRIM_THRESHOLD_": "0"})
    assert applied == "False" and faults > 10_000


def test_fast_on_the_cpu_chooses_what_pays_off_there():
    cfg, line = perf.apply_fast(config.build(MnistConfig, None, {"fast": True}), torch.device("cpu"))
    assert cfg.channels_last and not cfg.compile
    assert cfg.precision == ("bf16" if perf.cpu_has_bf16() else "fp32")
    assert line.startswith("--fast on cpu: ") and "no torch.compile" in line


def test_without_fast_nothing_changes():
    cfg = config.build(MnistConfig, None, {})
    assert perf.apply_fast(cfg, torch.device("cpu")) == (cfg, "")


def test_fast_and_a_speed_setting_of_ones_own_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="drop --fast, or drop precision"):
        config.build(MnistConfig, None, {"fast": True, "precision": "fp32"})
    (tmp_path / "c.yaml").write_text("fast: true\ncompile: false\n")
    with pytest.raises(ConfigError, match="drop compile"):
        config.build(MnistConfig, str(tmp_path / "c.yaml"), {})


def test_train_fast_says_what_it_chose_and_trains(tmp_path):
    proc = run_cli("train", "digits", "--fast", "--max-steps", "3", "--eval-limit", "64", "--out", str(tmp_path / "r"))
    assert proc.stdout.splitlines()[0].startswith("--fast on cpu: ")
    assert "fast: true" in (tmp_path / "r" / "config.yaml").read_text()  # chosen again, for the device, on resume
    speed = json.loads((tmp_path / "r" / "env.json").read_text())["speed"]  # what ran
    assert speed["channels_last"] is True and speed["compile"] is False
    assert speed["precision"] == ("bf16" if perf.cpu_has_bf16() else "fp32")


@pytest.mark.gpu
def test_fast_on_a_gpu_chooses_reduced_precision_compile_and_device_data(tmp_path):
    cfg, line = perf.apply_fast(config.build(MnistConfig, None, {"fast": True}), torch.device("cuda"))
    assert cfg.precision in ("bf16", "fp16") and cfg.compile and cfg.channels_last and cfg.data_on_device
    proc = run_cli("train", "digits", "--gpus", "1", "--fast", "--max-steps", "3", "--out", str(tmp_path / "r"))
    assert "--fast on cuda" in proc.stdout


_ALLOCATOR = textwrap.dedent("""
    import sys
    from towerlab import config, perf
    from towerlab.engine import fit
    from towerlab.recipes import get
    name, data = sys.argv[1], sys.argv[2]
    small = {"smiles-lstm": {"max_len": 64, "hidden": 16, "layers": 1}, "digits": {}}[name]
    fit(get(name), config.build(get(name).Config, None, {"data": data, "max_steps": 1, "batch_size": 8,
                                                          "eval_every_steps": 0, **small}), out=sys.argv[3])
    print(perf.keep_freed_memory.cache_info().misses)
""")


@pytest.mark.parametrize("name, tuned", [("smiles-lstm", "0"), ("digits", "1")])
def test_the_allocator_is_tuned_only_for_batches_of_one_shape(name, tuned, smiles_csv, tmp_path):
    # smiles-lstm cuts each batch to its longest molecule: keeping freed memory grew its heap without bound
    # (contract.RaggedBatches); the fixed-shape recipes keep it
    data = str(smiles_csv) if name == "smiles-lstm" else ""
    out = subprocess.run(
        [sys.executable, "-c", _ALLOCATOR, name, data, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[-1] == tuned
