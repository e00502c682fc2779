"""Sentence embeddings from an encoder: mean pooling over tokens, L2-normalised (as sentence-transformers
does for all-MiniLM-L6-v2 and multilingual-e5), for ``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Sequence


class TextEncoder:
    """An encoder that turns texts into unit vectors.

    Args:
        encoder: a transformers encoder whose output has ``last_hidden_state``.
        tokenizer: its tokenizer.
        max_length: texts are truncated to this many tokens.
    """

    def __init__(self, encoder, tokenizer, max_length: int):
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_base(cls, name: str) -> "TextEncoder":
        """The catalog base (or local directory) ``name``."""
        from transformers import AutoModel, AutoTokenizer

        from tailor.catalog import resolve_base
        from tailor.runtime import setup_torch

        setup_torch()
        base = resolve_base(name)
        return cls(AutoModel.from_pretrained(base.path), AutoTokenizer.from_pretrained(base.path), base.max_length)

    @classmethod
    def from_classifier(cls, classifier) -> "TextEncoder":
        """The (fine-tuned) encoder inside a loaded :class:`~tailor.models.classifier.TextClassifier`."""
        model = classifier.model
        encoder = model.encoder if hasattr(model, "embed") else model.base_model
        return cls(encoder, classifier.tokenizer, classifier.spec.max_length)

    def embed(self, texts: Sequence[str], batch_size: int = 64):
        """``(vectors, tokens)``: a float32 array ``(len(texts), dim)`` of unit vectors and the tokens read."""
        import numpy as np
        import torch

        from tailor.models.classifier import mean_pool
        from tailor.train.batching import encode, iter_batches

        encoded = encode(self.tokenizer, texts, self.max_length)
        out = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float32)
        device = next(self.encoder.parameters()).device
        with torch.inference_mode():
            for rows, batch in iter_batches(encoded, batch_size, self.tokenizer.pad_token_id, shuffle=False,
                                              device=str(device)):
                hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                pooled = torch.nn.functional.normalize(mean_pool(hidden.last_hidden_state, batch["attention_mask"]),
                                                       dim=-1)
                out[rows] = pooled.float().cpu().numpy()
        return out, sum(len(ids) for ids in encoded.input_ids)
