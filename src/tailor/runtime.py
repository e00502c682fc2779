"""Process-wide choices for running PyTorch models: threads, device, mixed precision, quiet libraries."""

from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def setup_torch() -> None:
    """Quiet transformers' load reports and use every core for math (once per process)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(usable_cores())


def usable_cores() -> int:
    """How many cores this process may run on (see :func:`usable_core_ids`)."""
    return max(1, len(usable_core_ids()))


def usable_core_ids() -> list[int]:
    """The ids of the cores this process may run on (the affinity mask where the OS has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


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
