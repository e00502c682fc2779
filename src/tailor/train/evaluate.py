"""Inference passes used inside training: logits over an encoded set, macro-F1 on validation."""

from __future__ import annotations

import numpy as np

from tailor.train.batching import Encoded, iter_batches


def predict_logits(model, encoded: Encoded, pad_id: int, *, batch_size: int = 64, device: str = "cpu",
                   bf16: bool = False) -> np.ndarray:
    """Logits for every row of ``encoded``, in row order, as float32 numpy."""
    import torch

    from tailor.models.classifier import forward_logits
    from tailor.runtime import autocast

    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    with torch.inference_mode(), autocast(device, bf16):
        for idx, batch in iter_batches(encoded, batch_size, pad_id, shuffle=False, device=device):
            logits = forward_logits(model, batch).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(encoded), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def macro_f1(targets, predictions) -> float:
    """Macro-averaged F1 over the classes present in ``targets`` or ``predictions``."""
    from sklearn.metrics import f1_score

    return float(f1_score(targets, predictions, average="macro", zero_division=0))
