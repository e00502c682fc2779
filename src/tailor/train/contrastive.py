"""Method ``contrastive``: few-shot classification by SetFit's recipe (Tunstall et al. 2022), as our own loop.

Stage 1 fine-tunes the encoder's sentence embeddings (mean-pooled, L2-normalised: what the head reads) so
that rows with the same label move together and rows with different labels apart; stage 2 fits the linear
head on the tuned encoder's embeddings with :func:`tailor.train.classify.fit_head`, exactly as method
``head`` does on the frozen base.

Stage 1's objective is the supervised contrastive loss (Khosla et al. 2020) over class-balanced batches
(:func:`balanced_batches`): in a batch, every other row with the anchor's label is a positive and every row
with another label a negative. SetFit's own objective (:func:`build_pairs`: each row with R positive and R
negative partners, the cosine of each pair regressed to 1 or 0) is ``contrastive_objective="pairs"``.
A batch of ``b`` rows holds about ``b²/2`` pairs for ``b`` forward passes, where SetFit's pairs cost two
forward passes each, so the same pairs are seen for a fraction of the encoder's time.
"""

from __future__ import annotations

import math
import random
import time
from typing import Sequence

from tailor.runtime import autocast
from tailor.train.batching import Encoded, collate
from tailor.train.classify import FitOutcome, fit_head, linear_schedule, seed_everything
from tailor.train.config import CONTRASTIVE_MAX_STEPS, CONTRASTIVE_PASSES, CONTRASTIVE_STEPS, TrainConfig
from tailor.train.progress import Reporter

LOG_EVERY = 10  # contrastive steps per history row
WARMUP_SHARE = 0.1


def balanced_batches(targets: Sequence[int], batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of row indices, each holding the same number of rows of each label it draws.

    Each batch takes ``per_label = max(2, batch_size // n_labels)`` rows from each of ``batch_size //
    per_label`` labels (all labels when they fit; else the next ones of a shuffled cycle over the labels, so
    every label comes round in turn). A label's rows are drawn without replacement from a shuffled cycle
    (reshuffled when used up), so every row is seen before any repeats; a label with fewer rows than
    ``per_label`` gives all of them.

    Args:
        targets: the class id of every row.
        batch_size: the most rows a batch holds (at least 2).
        steps: how many batches.
        seed: fixes every draw.

    Returns:
        One list of row indices per batch; a row appears at most once in a batch.
    """
    rng = random.Random(seed)
    rows_of: dict[int, list[int]] = {}
    for i, target in enumerate(targets):
        rows_of.setdefault(target, []).append(i)
    labels = sorted(rows_of)
    per_label = max(2, batch_size // len(labels))
    labels_per_batch = min(len(labels), max(1, batch_size // per_label))
    cycles = {label: _Cycle(rows, rng) for label, rows in rows_of.items()}
    label_cycle = _Cycle(labels, rng)
    batches = []
    for _ in range(steps):
        chosen = labels if labels_per_batch == len(labels) else label_cycle.take(labels_per_batch)
        batches.append([i for label in chosen for i in cycles[label].take(min(per_label, len(rows_of[label])))])
    return batches


class _Cycle:
    """Items drawn without replacement in shuffled order, reshuffled each time they are used up. A draw never
    holds an item twice: when a new round starts inside a draw, an item the draw already has is skipped in
    that round; a draw of more items than there are gives each once."""

    def __init__(self, items: Sequence, rng: random.Random):
        self.items, self.rng, self.queue = list(items), rng, []

    def take(self, n: int) -> list:
        out: list = []
        while len(out) < n:
            if not self.queue:
                self.queue = self.rng.sample(self.items, len(self.items))
            item = self.queue.pop()
            if item not in out:
                out.append(item)
            elif len(self.items) <= len(out):
                break
        return out


def build_pairs(targets: Sequence[int], per_row: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit's pairs: for every row, ``per_row`` rounds of one positive partner (another row with its label,
    target 1.0) and one negative partner (a row with another label, target 0.0), in shuffled order.

    A row alone in its label has no positive partner, and with a single label there are no negatives, so
    there are ``per_row * (rows whose label has another row)`` positives and ``per_row * rows`` negatives
    (none with one label).

    Returns:
        ``(row, partner, target)`` triples.
    """
    rng = random.Random(seed)
    rows_of: dict[int, list[int]] = {}
    for i, target in enumerate(targets):
        rows_of.setdefault(target, []).append(i)
    pairs = []
    for _ in range(per_row):
        for i, target in enumerate(targets):
            same = [j for j in rows_of[target] if j != i]
            if same:
                pairs.append((i, rng.choice(same), 1.0))
            others = [label for label in rows_of if label != target]
            if others:
                pairs.append((i, rng.choice(rows_of[rng.choice(others)]), 0.0))
    rng.shuffle(pairs)
    return pairs


def supervised_contrastive_loss(embeddings, labels, temperature: float):
    """The supervised contrastive loss of L2-normalised ``embeddings`` ``(B, H)`` with class ids ``labels``:
    for each row that has a positive (another row with its label), minus the mean over its positives of
    the log-softmax of its cosine similarities over all other rows, divided by ``temperature``; averaged
    over those rows."""
    import torch

    n = len(labels)
    similarity = embeddings @ embeddings.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positives.sum(1)
    anchors = counts > 0
    per_row = log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / counts[anchors]
    return -per_row.mean()


def pair_cosine_loss(embeddings, left, right, targets):
    """SetFit's loss: the squared error between each pair's cosine similarity (the embeddings are
    L2-normalised, so their dot product) and its target (1 similar, 0 dissimilar)."""
    cosine = (embeddings[left] * embeddings[right]).sum(-1)
    return ((cosine - targets) ** 2).mean()


def contrastive_batches(train: Encoded, cfg: TrainConfig) -> list[list[int]]:
    """Stage 1's batches of row indices (pairs mode: the rows of ``contrastive_batch_size // 2`` pairs)."""
    if cfg.contrastive_objective == "pairs":
        pairs = build_pairs(train.targets, cfg.contrastive_pairs_per_row, cfg.seed)
        per_batch = max(1, cfg.contrastive_batch_size // 2)
        return [[k for pair in pairs[s:s + per_batch] for k in pair[:2]] for s in range(0, len(pairs), per_batch)]
    return balanced_batches(train.targets, cfg.contrastive_batch_size, contrastive_steps(len(train), cfg), cfg.seed)


def contrastive_steps(rows: int, cfg: TrainConfig) -> int:
    """Stage 1's steps (objective ``supcon``): ``cfg.contrastive_steps`` when set, else enough batches of
    ``contrastive_batch_size`` rows for each of ``rows`` to be seen ``CONTRASTIVE_PASSES`` times, within
    ``[CONTRASTIVE_STEPS, CONTRASTIVE_MAX_STEPS]`` (a fixed 20 steps under-trained 32 rows per class; see
    :mod:`tailor.train.config`)."""
    if cfg.contrastive_steps:
        return cfg.contrastive_steps
    wanted = math.ceil(CONTRASTIVE_PASSES * rows / cfg.contrastive_batch_size)
    return min(CONTRASTIVE_MAX_STEPS, max(CONTRASTIVE_STEPS, wanted))


def contrastive_parameters(model) -> list:
    """The encoder parameters stage 1 trains: all but the word embeddings. A few dozen labelled rows touch
    few of their rows, and AdamW over them (11.7M of MiniLM's 22.7M parameters) was half of each step's
    optimizer time while its weight decay only shrank rows no text had used."""
    frozen = {id(p) for p in model.get_input_embeddings().parameters()}
    return [p for p in model.encoder.parameters() if p.requires_grad and id(p) not in frozen]


def fit_contrastive(model, train: Encoded, val: Encoded, cfg: TrainConfig, *, pad_id: int, num_labels: int,
                    device: str, bf16: bool, reporter: Reporter, deadline: float | None = None,
                    prior: Encoded | None = None) -> FitOutcome:
    """Fine-tune ``model.encoder`` contrastively on the labelled rows, then fit ``model.classifier``.

    ``model`` is :func:`tailor.models.classifier.build_pooled_head_model`'s (built by ``build_model
    ("contrastive", ...)``, or a contrastive version's ``load_trainable``), its encoder trainable.

    Stage 1: :func:`contrastive_steps` AdamW steps at peak ``contrastive_lr`` (linear warm-up over the first
    tenth, then linear decay) over :func:`contrastive_parameters`, gradients clipped at ``grad_clip``, each
    on a batch from :func:`contrastive_batches`; the encoder is frozen afterwards. Stage 2: :func:`fit_head`.

    Args:
        deadline: ``time.monotonic()`` after which stage 1 stops early (the head, seconds, is still fitted).
        prior: the label prompts stage 2 may start the head from (see :func:`fit_head`), embedded by the tuned
            encoder.

    Returns:
        The head's :class:`FitOutcome`, its ``history`` preceded by stage 1's rows (``stage``
        ``contrastive``: ``step``, mean ``train_loss`` over the last :data:`LOG_EVERY` steps, ``seconds``) and
        its ``steps`` counting both stages; ``stop_reason`` ``time_budget`` when the deadline cut stage 1.
    """
    import torch

    seed_everything(cfg.seed)
    model.to(device).train()
    batches = contrastive_batches(train, cfg)
    params = contrastive_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=cfg.contrastive_lr, weight_decay=cfg.weight_decay)
    scheduler = linear_schedule(optimizer, int(WARMUP_SHARE * len(batches)), len(batches))
    targets = torch.tensor(train.targets, device=device)
    rows, t0, window, stopped = [], time.perf_counter(), [], False
    reporter.message(f"contrastive stage: {len(batches)} steps over {len(train)} labelled rows "
                     f"({cfg.contrastive_objective})")
    reporter.start("contrastive encoder", len(batches))
    for step, indices in enumerate(batches, start=1):
        loss = _batch_loss(model, train, indices, targets, cfg, pad_id, device, bf16)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(loss.item())
        reporter.advance(1, step=step, loss=window[-1])
        stopped = deadline is not None and time.monotonic() > deadline
        if step % LOG_EVERY == 0 or step == len(batches) or stopped:
            rows.append({"stage": "contrastive", "step": step, "train_loss": round(sum(window) / len(window), 5),
                         "seconds": round(time.perf_counter() - t0, 2)})
            reporter.metrics(step, rows[-1])
            window = []
        if stopped:
            reporter.message(f"contrastive stage stopped by the time budget after {step} of {len(batches)} steps")
            break
    reporter.finish()
    model.encoder.requires_grad_(False)
    outcome = fit_head(model, train, val, cfg, pad_id=pad_id, num_labels=num_labels, device=device,
                       reporter=reporter, prior=prior)
    outcome.history = rows + [{"stage": "head", **row} for row in outcome.history]
    outcome.steps += rows[-1]["step"] if rows else 0
    if stopped:
        outcome.stop_reason = "time_budget"
    return outcome


def _batch_loss(model, train: Encoded, indices: list[int], targets, cfg: TrainConfig, pad_id: int, device: str,
                bf16: bool):
    """Stage 1's loss on one batch: rows embedded once each, then the objective's loss over them."""
    import torch

    unique = sorted(set(indices))
    batch = collate(train, unique, pad_id, device)
    with autocast(device, bf16):
        embeddings = model.embed(batch["input_ids"], batch["attention_mask"])
    embeddings = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    if cfg.contrastive_objective == "supcon":
        return supervised_contrastive_loss(embeddings, targets[unique], cfg.contrastive_temperature)
    position = {row: k for k, row in enumerate(unique)}
    left = torch.tensor([position[i] for i in indices[0::2]], device=device)
    right = torch.tensor([position[i] for i in indices[1::2]], device=device)
    pair_targets = (targets[indices[0::2]] == targets[indices[1::2]]).float()
    return pair_cosine_loss(embeddings, left, right, pair_targets)
