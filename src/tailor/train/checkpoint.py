"""Per-epoch checkpoints of a training run, written atomically, so a crashed run resumes where it was.

A run directory is ``<TAILOR_HOME>/runs/<run-id>``; the run id is derived from the data and the config, so
the same command with ``--resume`` finds its own checkpoints. A ``tenant`` file in it names the tenant that owns
it, so deleting the tenant finds it (:mod:`tailor.jobs.erase`). With a keyring (a master key is configured) the
checkpoints are sealed under the tenant's data key: serialized in memory, then written encrypted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

TENANT_FILE = "tenant"


def run_id_for(*parts) -> str:
    """A stable 12-hex-digit id for a run from its inputs (data digests, config, name)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return "run-" + hashlib.sha256(blob).hexdigest()[:12]


class Checkpointer:
    """Saves and restores the trainable state of one run.

    ``last.pt`` holds the state after the most recent finished epoch (trainable weights, optimizer,
    scheduler, RNG states, history); ``best.pt`` holds the trainable weights of the best epoch so far.
    Both are written to a temporary file and renamed, so a crash never leaves a half-written checkpoint.

    Args:
        run_dir: the run's directory.
        keyring: a :class:`tailor.security.crypto.Keyring` to seal the checkpoints with, or None (plaintext).
        tenant: the tenant that owns the run (recorded in the run's ``tenant`` file; its key seals them).
    """

    def __init__(self, run_dir: Path, keyring=None, tenant: str | None = None):
        if keyring is not None and tenant is None:
            raise ValueError("sealed checkpoints need the tenant whose key seals them")
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "checkpoints"
        self.keyring = keyring
        self.tenant = tenant

    def _write(self, name: str, state: dict) -> None:
        import torch

        self.dir.mkdir(parents=True, exist_ok=True)
        if self.tenant is not None:
            (self.run_dir / TENANT_FILE).write_text(self.tenant + "\n", encoding="utf-8")
        tmp = self.dir / f".{name}.tmp"
        if self.keyring is None:
            torch.save(state, tmp)
        else:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            with self.keyring.writer(self.tenant, tmp.open("wb")) as sealed:
                sealed.write(buffer.getbuffer())
        os.replace(tmp, self.dir / name)

    def _read(self, path: Path):
        import torch

        from tailor.security.crypto import is_sealed_file

        if not is_sealed_file(path):
            return torch.load(path, map_location="cpu", weights_only=False)
        if self.keyring is None:
            from tailor.security.crypto import DecryptionError

            raise DecryptionError(f"checkpoint {path} is encrypted but no master key is configured")
        with path.open("rb") as raw, self.keyring.reader(self.tenant, raw) as plain:
            return torch.load(io.BytesIO(plain.read()), map_location="cpu", weights_only=False)

    def save_epoch(self, state: dict) -> None:
        self._write("last.pt", state)

    def save_best(self, weights: dict) -> None:
        self._write("best.pt", weights)

    def load(self) -> tuple[dict, dict] | None:
        """``(last_state, best_weights)`` when the run has a checkpoint, else None.

        Raises:
            DecryptionError: a sealed checkpoint does not open (altered, or no master key).
        """
        last, best = self.dir / "last.pt", self.dir / "best.pt"
        if not last.is_file():
            return None
        return self._read(last), (self._read(best) if best.is_file() else {})

    def clear(self) -> None:
        """Remove the checkpoints, the tenant file and the run directory when nothing else is left in it."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.run_dir / TENANT_FILE).unlink(missing_ok=True)
        try:
            self.run_dir.rmdir()
        except OSError:  # missing, or holding something else
            pass


def runs_of_tenant(runs_root: Path, tenant: str) -> list[Path]:
    """The run directories under ``runs_root`` whose ``tenant`` file names ``tenant``."""
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        return []
    return sorted(path.parent for path in runs_root.glob(f"*/{TENANT_FILE}")
                  if path.read_text(encoding="utf-8").strip() == tenant)


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
