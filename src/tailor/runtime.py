"""Process-wide choices for running PyTorch models: threads, device, mixed precision, quiet libraries."""

from __future__ import annotations

import functools
import os
from pathlib import Path


@functools.lru_cache(maxsize=1)
def setup_torch() -> None:
    """Quiet transformers' load reports and use every usable core for math (once per process; a training
    then shares them with other trainings through :mod:`tailor.cores`)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(usable_cores())


def usable_cores() -> int:
    """How many cores this process may use: its affinity mask (:func:`usable_core_ids`), bounded by a cgroup
    CPU quota (a container's or a Kubernetes pod's CPU limit, rounded down) and by ``TAILOR_THREADS`` when
    set. At least 1."""
    cores = len(usable_core_ids())
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, int(quota))
    explicit = os.environ.get("TAILOR_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        cores = min(cores, int(explicit))
    return max(1, cores)


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in cores (e.g. 1.5), or None when there is none.

    Reads cgroup v2's ``cpu.max`` (``"150000 100000"``; ``"max ..."`` means no limit) or v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 means no limit), for this process's own cgroup and its
    ancestors (the tightest wins), as listed in ``/proc/self/cgroup``.
    """
    try:
        lines = Path(proc_cgroup).read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, group = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, read = Path(root), _cpu_max
        elif "cpu" in controllers.split(","):
            base, read = Path(root) / controllers, _cfs_quota
        else:
            continue
        parts = [p for p in group.split("/") if p]
        for depth in range(len(parts), -1, -1):
            limit = read(base.joinpath(*parts[:depth]))
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def _cpu_max(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _cfs_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period = int((directory / "cpu.cfs_period_us").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def usable_core_ids() -> list[int]:
    """The ids of the cores this process may run on (the affinity mask where the OS has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin_current_thread(cores: list[int] | None) -> None:
    """Restrict the calling thread (and the threads it starts later) to ``cores`` where the OS allows it."""
    if hasattr(os, "sched_setaffinity") and cores:
        try:
            os.sched_setaffinity(0, set(cores))
        except OSError:
            pass


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when a GPU is present (or asked for), else ``cpu``."""
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def supports_bf16(device: str) -> bool:
    """True when bf16 autocast runs natively and fast on ``device`` (AVX-512 bf16/AMX CPUs, Ampere+ GPUs)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: str, enabled: bool):
    """A bf16 autocast context for ``device`` (a no-op context when disabled)."""
    import torch

    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                          enabled=enabled)
