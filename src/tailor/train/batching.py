"""Tokenize once, then serve length-grouped, dynamically padded batches.

Sorting texts of similar length into the same batch means each batch pads only to its own longest text,
which is most of the speed-up over padding every batch to ``max_length``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence


@dataclass(frozen=True)
class Encoded:
    """Token ids per text (no padding) and the class id per text (or -1 when unlabelled)."""

    input_ids: list[list[int]]
    targets: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, texts: Sequence[str], max_length: int, targets: Sequence[int] | None = None) -> Encoded:
    """Tokenize ``texts`` with truncation to ``max_length`` tokens and no padding."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), 2048):
        chunk = list(texts[start:start + 2048])
        ids.extend(tokenizer(chunk, truncation=True, max_length=max_length, padding=False)["input_ids"])
    return Encoded(ids, list(targets) if targets is not None else [-1] * len(ids))


def length_grouped_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0,
                           group_factor: int = 50) -> list[list[int]]:
    """Indices split into batches of similar length.

    With ``shuffle``, rows are shuffled, cut into groups of ``batch_size * group_factor``, sorted by length
    inside each group and batched, and the batch order is shuffled: batches stay random across epochs
    while padding stays small. Without it, rows are simply sorted by length (for inference).
    """
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    group = batch_size * group_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(encoded: Encoded, indices: Sequence[int], pad_id: int, device: str = "cpu") -> dict:
    """Pad the rows at ``indices`` to their longest and return model inputs (and ``labels``) as tensors."""
    import torch

    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        input_ids[k, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention[k, :len(row)] = 1
    batch = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
    batch["labels"] = torch.tensor([encoded.targets[i] for i in indices], dtype=torch.long, device=device)
    return batch


def iter_batches(encoded: Encoded, batch_size: int, pad_id: int, *, shuffle: bool, seed: int = 0,
                 device: str = "cpu") -> Iterator[tuple[list[int], dict]]:
    """Yield ``(indices, batch)`` pairs over ``encoded`` in length-grouped order. Before each batch, a
    training's thread count follows its share of the machine's cores (:func:`tailor.cores.rebalance`)."""
    from tailor.cores import rebalance

    lengths = [len(r) for r in encoded.input_ids]
    for idx in length_grouped_batches(lengths, batch_size, shuffle=shuffle, seed=seed):
        rebalance()
        yield idx, collate(encoded, idx, pad_id, device)
