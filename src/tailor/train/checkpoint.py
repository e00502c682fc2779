"""Per-epoch checkpoints of a training run, written atomically, so a crashed run resumes where it was.

A run directory is ``<TAILOR_HOME>/runs/<run-id>``; the run id is derived from the data and the config, so
the same command with ``--resume`` finds its own checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path


def run_id_for(*parts) -> str:
    """A stable 12-hex-digit id for a run from its inputs (data digests, config, name)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return "run-" + hashlib.sha256(blob).hexdigest()[:12]


class Checkpointer:
    """Saves and restores the trainable state of one run.

    ``last.pt`` holds the state after the most recent finished epoch (trainable weights, optimizer,
    scheduler, RNG states, history); ``best.pt`` holds the trainable weights of the best epoch so far.
    Both are written to a temporary file and renamed, so a crash never leaves a half-written checkpoint.
    """

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "checkpoints"

    def _write(self, name: str, state: dict) -> None:
        import torch

        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{name}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.dir / name)

    def save_epoch(self, state: dict) -> None:
        self._write("last.pt", state)

    def save_best(self, weights: dict) -> None:
        self._write("best.pt", weights)

    def load(self) -> tuple[dict, dict] | None:
        """``(last_state, best_weights)`` when the run has a checkpoint, else None."""
        import torch

        last, best = self.dir / "last.pt", self.dir / "best.pt"
        if not last.is_file():
            return None
        last_state = torch.load(last, map_location="cpu", weights_only=False)
        best_weights = torch.load(best, map_location="cpu", weights_only=False) if best.is_file() else {}
        return last_state, best_weights

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def trainable_state(model) -> dict:
    """A CPU copy of the parameters that training changes (all of them for full fine-tuning)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def restore_trainable(model, state: dict) -> None:
    """Copy ``state`` (from :func:`trainable_state`) back into ``model``'s parameters."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
