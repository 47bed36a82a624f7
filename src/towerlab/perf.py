"""What makes a training process fast where it runs: the host allocator, and what --fast turns on for the device.

Both were measured, not assumed (bench/throughput.py, docs/results.md):
- glibc's malloc hands large freed blocks back to the kernel and takes them again on the next step, so a CPU step
  of the MNIST ConvNet took 16,000-24,000 page faults (its 25 MB activations, fresh zeroed pages every step), and how
  many depended on what the process had allocated before. Keeping freed memory in the process removes them all.
- On the CPU, torch.compile made the MNIST ConvNet 30% slower; bf16 autocast (on a CPU with AVX512-BF16 or AMX)
  and channels_last made it 1.7x faster, the CIFAR-10 CNN 1.27x.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import platform
from functools import lru_cache
from pathlib import Path

# the settings --fast chooses; a run that names one itself chooses them all itself (config.build refuses the mix)
FAST_FIELDS = ("precision", "channels_last", "compile", "compile_mode", "data_on_device")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_KEEP_BYTES = 1 << 30  # freed blocks up to 1 GiB stay in the process; larger ones still go back


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for the next step instead of returning it to the kernel (a fixed
    mmap threshold and trim threshold of 1 GiB, which also stops the threshold from moving with what the process
    allocated before). The process's resident memory then stays at its peak, as under PyTorch's CUDA caching
    allocator. Left alone where the user chose an allocator: LD_PRELOAD (jemalloc, tcmalloc), MALLOC_*_ or
    GLIBC_TUNABLES malloc settings. True when applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    env = os.environ
    if (
        env.get("LD_PRELOAD")
        or "MALLOC_TRIM_THRESHOLD_" in env
        or "MALLOC_MMAP_THRESHOLD_" in env
        or "malloc" in env.get("GLIBC_TUNABLES", "")
    ):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX): elsewhere bf16 is emulated, slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_settings(device) -> tuple[dict, list[str]]:
    """(the speed settings that pay off on `device`, a reason for each choice)."""
    import torch

    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return (
            {
                "precision": "bf16" if bf16 else "fp16",
                "channels_last": True,
                "compile": True,
                "compile_mode": "default",
                "data_on_device": True,
            },
            [
                f"{'bf16' if bf16 else 'fp16 (this GPU has no bf16)'} autocast",
                "channels_last",
                "torch.compile",
                "the dataset in GPU memory",
            ],
        )
    bf16 = cpu_has_bf16()
    return (
        {
            "precision": "bf16" if bf16 else "fp32",
            "channels_last": True,
            "compile": False,
            "compile_mode": "default",
            "data_on_device": True,
        },
        [
            "bf16 autocast (the CPU has bf16 instructions)" if bf16 else "fp32 (no bf16 instructions on this CPU)",
            "channels_last",
            "no torch.compile (slower on the CPU: bench/throughput.py)",
        ],
    )


def apply_fast(cfg, device):
    """cfg with --fast resolved for `device` (unchanged without it), and the line saying what was chosen."""
    if not getattr(cfg, "fast", False):
        return cfg, ""
    settings, reasons = fast_settings(device)
    return dataclasses.replace(cfg, **settings), f"--fast on {device.type}: {', '.join(reasons)}"


class SystemMetrics:
    """Host and device figures beside the loss, read at each log line: this process's resident memory and CPU use
    since the last line, and on a GPU its memory allocated / reserved / peak and utilisation (where NVML answers).
    Reading them costs microseconds (bench/system_metrics.py measures the run with and without)."""

    def __init__(self, device):
        import time

        self.device, self._clock = device, time
        self._last = (time.perf_counter(), time.process_time())

    def read(self) -> dict[str, float]:
        import torch

        now = (self._clock.perf_counter(), self._clock.process_time())
        wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        out = {"sys/rss_mb": _rss_bytes() / 2**20, "sys/cpu_percent": 100.0 * cpu / max(wall, 1e-9)}
        if self.device.type == "cuda":
            out.update(
                {
                    "sys/gpu_allocated_mb": torch.cuda.memory_allocated(self.device) / 2**20,
                    "sys/gpu_reserved_mb": torch.cuda.memory_reserved(self.device) / 2**20,
                    "sys/gpu_peak_mb": torch.cuda.max_memory_allocated(self.device) / 2**20,
                }
            )
            utilization = _gpu_utilization(self.device)
            if utilization is not None:
                out["sys/gpu_utilization"] = utilization
        return out


def _gpu_utilization(device) -> float | None:
    """The GPU's busy percentage from NVML, or None where NVML (pynvml) does not answer: the memory figures stand."""
    import torch

    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 -- torch raises ModuleNotFoundError, RuntimeError or pynvml's own errors
        return None


def _rss_bytes() -> int:
    """Resident memory now (Linux: /proc/self/statm), else the peak (resource)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
