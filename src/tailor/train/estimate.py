"""How long a training job will take here: the chosen base's measured speed on this machine, summed over
every stage the job runs.

The speed comes from a probe (:func:`probe_speed`): a couple of forward + backward + optimizer steps of the
actual base at the job's batch size and typical padded length, and forward-only passes at the same shape
(bf16 as validation runs them, fp32 as the embedding pass and the test evaluation run them). A probe takes
a second or two and is cached per (base, device, threads, precision, batch shape) in
``TAILOR_HOME/cache/speed.json``; it is measured again when older than :data:`STALE_AFTER_S`, or when the
machine (host, CPU, PyTorch) differs. The thread count is :func:`tailor.runtime.usable_cores`, so a
machine whose cores are taken by other work (or by another Tailor training) is probed at what it can give.

The estimate (:class:`Estimate`) sums the stages in the order the job runs them:

- ``data``: reading, cleaning, the data report (its out-of-fold label check), loading the base and the
  probe itself; already done when the estimate is made, so it is the measured figure.
- ``train``: full/LoRA: every epoch's batches (their padded tokens counted exactly from the length-grouped
  batching) at the measured per-token forward + backward cost, plus one optimizer step per batch; head: one
  fp32 embedding pass over training and validation rows, then ``head_epochs`` full-batch steps of the
  linear head; contrastive: the contrastive stage's batches (their padded tokens counted exactly from
  :func:`tailor.train.contrastive.contrastive_batches`) at the full fine-tuning per-token forward + backward
  cost plus full fine-tuning's optimizer step each (an upper bound: its word embeddings stay frozen), then
  what head does on the tuned encoder.
- ``validation``: one bf16 forward pass over the validation rows per epoch (full/LoRA).
- ``self_training``: with a pool of unlabelled texts (:mod:`tailor.train.self_training`), each of the
  ``self_training_rounds`` rounds predicts the pool and the validation rows (fp32 passes), then trains a fresh
  model as the train and validation stages do, on the labelled rows plus the round's pseudo-labels: at most
  ``round x pseudo_label_growth`` times each label's labelled rows, cut to the pool's size, their lengths spread
  like the pool's. An upper bound: a round stops self-training when no text is confident enough or validation
  gets worse, and a label gets fewer pseudo-labels when fewer texts are predicted as it.
- ``test``: one fp32 forward pass over the test rows, and one over the validation rows (the suggested
  abstain threshold).
- ``explain``: the evaluation's explanations: a sample of test rows and the most confident mistakes, each
  predicted again once per word left out (occlusion), and the sample once per faithfulness draw.
- ``gate``: the ONNX graphs and the accuracy gate (:mod:`tailor.models.optimize`): a full version exports,
  checks and quantizes its own graph (cost in proportion to its parameters), and so does a contrastive
  version (its own encoder); head and LoRA versions use their base's graphs, built once per storage root.
  Then every runtime scores the validation rows and is timed.
- ``save``: the version's weights and reports written and published.

Early stopping can end training sooner than the estimate, which assumes every epoch runs; a time budget
caps the training stages.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from tailor.train.batching import length_grouped_batches

SPEED_FILE = Path("cache") / "speed.json"
STALE_AFTER_S = 7 * 24 * 3600
SPEED_FORMAT = 3  # 2: the optimizer step includes gradient clipping; 3: full as it trains (see build_model)
TIMED_STEPS = 2  # after one untimed warm-up step; the fastest counts (other work only slows a step down)
LENGTH_BUCKET = 8  # probe lengths are rounded up to a multiple of this, so near-equal jobs share a probe
INFER_BATCH = 64  # predict_logits and embed_all's batch size
HEAD_PROBE_ROWS, HEAD_PROBE_CLASSES = 2048, 64

# The ONNX build of a full version (export, check against PyTorch, int8 quantization), measured on this
# project's development machine (Xeon with AMX, one core): minilm-l6 (22.7M parameters) about 9s, me5-small
# (118M) 2.8 times as long. Scaled by the ratio of this machine's optimizer step to the development machine's
# (both read and write every parameter).
GATE_BUILD_FIXED_S = 5.2
GATE_BUILD_S_PER_MPARAM = 0.167
REFERENCE_OPTIMIZER_S_PER_MPARAM = 0.0095  # AdamW step, seconds per million parameters, 1 core
# Scoring the validation rows: torch-fp32 (1x a fp32 forward pass), onnx-fp32 and onnx-int8 (measured
# 1.6x and 0.9x of it on one core), then each runtime timed on 3 batches of 32 rows.
GATE_SCORING_PASSES = 3.5
GATE_TIMING_ROWS = 3 * (2 + 2 * 32)
GATE_SESSIONS_S_PER_MPARAM = 0.03  # opening the ONNX Runtime sessions
SAVE_S_PER_MPARAM = 0.015  # safetensors + reports + publish, per million saved parameters
SAVE_FIXED_S = 0.5


def format_seconds(seconds: float) -> str:
    """``43s``, ``2m10s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Speed:
    """What the probe measured for one base at one batch shape on this machine.

    Attributes:
        batch_size / length: the probed batch shape (rows, tokens per row).
        step_s: per method (``full``, ``lora``), ``{"fwd_bwd": s, "optimizer": s}`` for one training step.
        forward_s: one forward pass at the same shape: ``train`` (the training precision, as validation
            runs it) and ``fp32`` (as the embedding pass and the test evaluation run it).
        params: the base's parameter count.
        hidden: its hidden size.
        head_macs_per_s: multiply-accumulates per second of a linear head's full-batch step.
        threads / device / bf16: where it was measured.
    """

    batch_size: int
    length: int
    step_s: dict[str, dict[str, float]]
    forward_s: dict[str, float]
    params: int
    hidden: int
    head_macs_per_s: float
    threads: int = 1
    device: str = "cpu"
    bf16: bool = False

    def fwd_bwd_per_token(self, method: str) -> float:
        return self.step_s[method]["fwd_bwd"] / (self.batch_size * self.length)

    def forward_per_token(self, precision: str) -> float:
        return self.forward_s[precision] / (self.batch_size * self.length)


_TRAINING_STAGES = ("train", "validation", "self_training")


@dataclass(frozen=True)
class SelfTrainingRound:
    """The most one self-training round does (see the module docstring).

    Attributes:
        pseudo_labels: the most pseudo-labels the round adds to the labelled rows.
        train_lengths: token counts of the rows its fresh model trains on (labelled, then pseudo-labelled).
        predict_tokens: padded tokens of the pool and validation rows it predicts first.
        contrastive_work: contrastive: ``(steps, padded tokens)`` of the fresh model's contrastive stage.
    """

    pseudo_labels: int
    train_lengths: list[int]
    predict_tokens: int
    contrastive_work: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Estimate:
    """Estimated seconds per stage (in the job's order) and in total.

    Attributes:
        method: what is estimated (``full``, ``lora``, ``head``, ``contrastive``, ``chat-lora``).
        stages: seconds per stage; ``data`` is already measured when the estimate is made.
        epochs: epochs (full/LoRA/chat), head steps (head) or contrastive steps (contrastive) the training
            stage counts.
        trials: training runs (``--search``); 1 otherwise.
    """

    method: str
    stages: dict[str, float]
    epochs: int
    trials: int = 1
    notes: dict = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return round(sum(self.stages.values()), 1)

    @property
    def training_s(self) -> float:
        """The stages a training deadline governs: training, its validation passes and the self-training rounds'
        fresh models."""
        return round(sum(self.stages.get(stage, 0.0) for stage in _TRAINING_STAGES), 1)

    @property
    def per_epoch_s(self) -> float:
        """Training seconds (with validation) of one epoch of one trial."""
        return round((self.stages.get("train", 0.0) + self.stages.get("validation", 0.0))
                     / max(1, self.epochs * self.trials), 1)

    def within(self, budget_s: float | None) -> "Estimate":
        """This estimate with its training stages cut to ``budget_s`` seconds (the deadline stops training)."""
        if budget_s is None or self.training_s <= budget_s:
            return self
        share = max(budget_s, 0.0) / self.training_s
        stages = {k: round(v * share, 1) if k in _TRAINING_STAGES else v for k, v in self.stages.items()}
        return Estimate(self.method, stages, self.epochs, self.trials, self.notes)

    def describe(self) -> str:
        """``2m10s (train 1m50s over 4 epochs, validation 6s, gate 10s, ...)``."""
        parts = []
        for stage, seconds in self.stages.items():
            text = f"{stage} {format_seconds(seconds)}"
            if stage == "data":
                text += " (done)"
            elif stage == "train" and self.method == "head":
                text += f" (embedding {format_seconds(self.notes.get('embedding_s', 0))}, {self.epochs} head steps)"
            elif stage == "train" and self.method == "contrastive":
                text += (f" (contrastive {format_seconds(self.notes.get('contrastive_s', 0))} over {self.epochs} "
                         f"steps, embedding {format_seconds(self.notes.get('embedding_s', 0))}, "
                         f"{self.notes.get('head_steps', 0)} head steps)")
            elif stage == "self_training":
                rounds = self.notes.get("pseudo_labels", [])
                text += (f" ({len(rounds)} {'round' if len(rounds) == 1 else 'rounds'}, up to "
                         f"{' + '.join(map(str, rounds))} pseudo-labels)")
            elif stage == "train":
                unit = "epoch" if self.epochs == 1 else "epochs"
                text += f" over {self.epochs} {unit}" + (f" x {self.trials} trials" if self.trials > 1 else "")
            parts.append(text)
        return f"{format_seconds(self.total_s)} ({', '.join(parts)})"

    def as_dict(self) -> dict:
        return {"method": self.method, "total_s": self.total_s, "stages": dict(self.stages), "epochs": self.epochs,
                "trials": self.trials}


def took_message(actual_s: float, estimated_s: float) -> str:
    """``took 2m03s (estimated 2m10s, -5%)``: the actual time and how far it fell from the estimate."""
    deviation = round(100 * (actual_s / estimated_s - 1)) if estimated_s > 0 else 0
    return f"took {format_seconds(actual_s)} (estimated {format_seconds(estimated_s)}, {deviation:+d}%)"


# --------------------------------------------------------------------------------------------- workload


def padded_tokens(lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0) -> int:
    """Tokens the model processes for ``lengths`` batched as :func:`~tailor.train.batching.iter_batches`
    batches them (each batch padded to its longest row)."""
    batches = length_grouped_batches(lengths, batch_size, shuffle=shuffle, seed=seed)
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def probe_length(lengths: Sequence[int], batch_size: int, seed: int) -> int:
    """The probe's tokens per row: the training batches' mean padded length, rounded up to ``LENGTH_BUCKET``."""
    if not lengths:
        return LENGTH_BUCKET
    mean = padded_tokens(lengths, batch_size, shuffle=True, seed=seed) / len(lengths)
    return max(LENGTH_BUCKET, math.ceil(mean / LENGTH_BUCKET) * LENGTH_BUCKET)


def estimate_classification(method: str, speed: Speed, *, train_lengths: Sequence[int],
                            val_lengths: Sequence[int], n_test: int, num_labels: int, batch_size: int, epochs: int,
                            seed: int, head_epochs: int, elapsed_s: float = 0.0, trials: int = 1,
                            gate_graphs_built: bool = True, contrastive_work: tuple[int, int] = (0, 0),
                            self_training: Sequence[SelfTrainingRound] = ()) -> Estimate:
    """The classification job's stages for ``method`` at the measured ``speed``.

    Args:
        train_lengths / val_lengths: token counts of the encoded training and validation rows.
        n_test: test rows (their lengths are taken to be like the validation rows').
        seed: the job's seed (epoch ``e`` shuffles with ``seed + e``, as the loop does).
        elapsed_s: seconds the job has already spent (the data stage).
        trials: training runs (``--search N``).
        gate_graphs_built: head/LoRA: the base's ONNX graphs are already in the storage root's cache.
        contrastive_work: contrastive: ``(steps, padded tokens)`` of its contrastive stage (see
            :func:`contrastive_workload`).
        self_training: the self-training rounds after training (see :func:`self_training_rounds`); none
            without a pool. Each trains one model (the search's trials are behind it).
    """
    mparams = speed.params / 1e6
    val_tokens = padded_tokens(val_lengths, INFER_BATCH, shuffle=False)
    mean_val = val_tokens / len(val_lengths) if val_lengths else speed.length
    fit = dict(val_lengths=val_lengths, val_tokens=val_tokens, num_labels=num_labels, batch_size=batch_size,
               epochs=epochs, seed=seed, head_epochs=head_epochs)
    train, validation, counted, notes = _training_seconds(method, speed, train_lengths, trials=trials,
                                                          contrastive_work=contrastive_work, **fit)
    rounds = 0.0
    for done in self_training:
        round_train, round_validation, _, _ = _training_seconds(method, speed, done.train_lengths, trials=1,
                                                                contrastive_work=done.contrastive_work, **fit)
        rounds += done.predict_tokens * speed.forward_per_token("fp32") + round_train + round_validation
    if self_training:
        notes["pseudo_labels"] = [done.pseudo_labels for done in self_training]
    test = (n_test + len(val_lengths)) * mean_val * speed.forward_per_token("fp32")  # + the abstain threshold
    stages = {"data": elapsed_s, "train": train, "validation": validation, "self_training": rounds, "test": test,
              "explain": explain_seconds(speed, n_test, mean_val),
              "gate": gate_seconds(method, speed, len(val_lengths), mean_val, gate_graphs_built),
              "save": SAVE_FIXED_S + (SAVE_S_PER_MPARAM * mparams if method in ("full", "contrastive") else 0.0)}
    if method in ("head", "contrastive"):
        del stages["validation"]
    if not self_training:
        del stages["self_training"]
    return Estimate(method, {k: round(v, 1) for k, v in stages.items()}, counted, trials if method != "head" else 1,
                    notes)


def _training_seconds(method: str, speed: Speed, train_lengths: Sequence[int], *, val_lengths: Sequence[int],
                      val_tokens: int, num_labels: int, batch_size: int, epochs: int, seed: int, head_epochs: int,
                      trials: int, contrastive_work: tuple[int, int]) -> tuple[float, float, int, dict]:
    """``(train s, validation s, steps or epochs counted, notes)`` of training ``method`` on rows of
    ``train_lengths`` tokens."""
    notes: dict = {}
    if method in ("head", "contrastive"):
        embed_tokens = padded_tokens(list(train_lengths) + list(val_lengths), INFER_BATCH, shuffle=False)
        embedding = embed_tokens * speed.forward_per_token("fp32")
        macs = len(train_lengths) * speed.hidden * num_labels * 3  # forward + the two backward products
        train = embedding + head_epochs * macs / speed.head_macs_per_s
        notes["embedding_s"] = round(embedding, 1)
        if method == "head":
            return train, 0.0, head_epochs, notes
        steps, tokens = contrastive_work
        contrastive = tokens * speed.fwd_bwd_per_token("full") + steps * speed.step_s["full"]["optimizer"]
        notes.update(contrastive_s=round(trials * contrastive, 1), head_steps=head_epochs)
        return trials * (contrastive + train), 0.0, steps, notes
    steps = math.ceil(len(train_lengths) / batch_size)
    tokens = sum(padded_tokens(train_lengths, batch_size, shuffle=True, seed=seed + e) for e in range(1, epochs + 1))
    train = trials * (tokens * speed.fwd_bwd_per_token(method) + epochs * steps * speed.step_s[method]["optimizer"])
    return train, trials * epochs * val_tokens * speed.forward_per_token("train"), epochs, notes


def pseudo_label_caps(label_counts: Sequence[int], round_no: int, growth: float, pool_rows: int) -> list[int]:
    """The most pseudo-labels per class self-training round ``round_no`` adds: ``round_no x growth`` times the
    class's labelled rows, rounded down (as :func:`tailor.train.self_training.select_pseudo_labels` caps them),
    cut in proportion (rounded down) when together they exceed the pool's ``pool_rows``."""
    wanted = [int(growth * round_no * count) for count in label_counts]
    total = sum(wanted)
    if total <= pool_rows:
        return wanted
    return [want * pool_rows // total for want in wanted]


def self_training_rounds(train_enc, val_lengths: Sequence[int], pool_lengths: Sequence[int], cfg,
                         method: str) -> list[SelfTrainingRound]:
    """The most each of ``cfg.self_training_rounds`` rounds does on a pool of texts of ``pool_lengths`` tokens
    (at most ``cfg.unlabeled_max_rows`` of them are used), for a job whose encoded training rows are
    ``train_enc``. A round's pseudo-labels are given the pool's lengths, spread evenly over its sorted lengths."""
    from tailor.train.batching import Encoded

    pool = sorted(pool_lengths[:cfg.unlabeled_max_rows])
    train_lengths = [len(r) for r in train_enc.input_ids]
    counts = [list(train_enc.targets).count(k) for k in range(max(train_enc.targets, default=-1) + 1)]
    predict_tokens = (padded_tokens(pool, INFER_BATCH, shuffle=False)
                      + padded_tokens(val_lengths, INFER_BATCH, shuffle=False))
    rounds = []
    for round_no in range(1, cfg.self_training_rounds + 1):
        caps = pseudo_label_caps(counts, round_no, cfg.pseudo_label_growth, len(pool))
        added = sum(caps)
        lengths = train_lengths + [pool[(2 * i + 1) * len(pool) // (2 * added)] for i in range(added)]
        work = (0, 0)
        if method == "contrastive":
            targets = list(train_enc.targets) + [k for k, cap in enumerate(caps) for _ in range(cap)]
            work = contrastive_workload(Encoded([[0] * n for n in lengths], targets), cfg)
        rounds.append(SelfTrainingRound(added, lengths, predict_tokens, work))
    return rounds


def explain_seconds(speed: Speed, n_test: int, mean_tokens: float) -> float:
    """The evaluation's explanations (:func:`tailor.eval.explanations.explain_evaluation`): each explained test row
    (a sample, plus the most confident mistakes) is predicted once per word left out, and each sampled row once
    more per faithfulness draw; a row's words are taken as its tokens (an upper bound: words split into pieces)."""
    from tailor.eval.explanations import MAX_ROWS, MISTAKES
    from tailor.eval.faithfulness import DEFAULT_DRAWS
    from tailor.models.explain import MAX_UNITS

    sampled = min(MAX_ROWS, n_test)
    explained = min(n_test, sampled + MISTAKES)
    units = min(MAX_UNITS, mean_tokens)
    rows = explained * (units + 1) + sampled * (1 + DEFAULT_DRAWS)
    return rows * mean_tokens * speed.forward_per_token("fp32")


def gate_seconds(method: str, speed: Speed, val_rows: int, mean_val_tokens: float, graphs_built: bool) -> float:
    """The ONNX build and accuracy gate (see the module docstring)."""
    mparams = speed.params / 1e6
    machine = (speed.step_s.get("full", {}).get("optimizer", 0.0) / mparams / REFERENCE_OPTIMIZER_S_PER_MPARAM
               if "full" in speed.step_s else 1.0)
    machine = min(max(machine, 0.25), 4.0)
    build = 0.0
    if method in ("full", "contrastive") or not graphs_built:
        build = (GATE_BUILD_FIXED_S + GATE_BUILD_S_PER_MPARAM * mparams) * machine
    sessions = GATE_SESSIONS_S_PER_MPARAM * mparams * machine
    scoring = (GATE_SCORING_PASSES * val_rows + GATE_TIMING_ROWS) * mean_val_tokens * speed.forward_per_token("fp32")
    return build + sessions + scoring


def graphs_built(home: Path, base_name: str, method: str) -> bool:
    """True when the base's shared ONNX graphs for a head or LoRA version are already in the storage root."""
    from tailor.models.optimize import base_graph_dir
    from tailor.models.runtimes import ONNX_FILES, onnx_cache_dir

    kind = "encoder" if method == "head" else "lora"
    return (base_graph_dir(onnx_cache_dir(home), base_name, kind) / ONNX_FILES["onnx-int8"]).is_file()


# ------------------------------------------------------------------------------------------------ probe


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _fastest(run, device: str, repeats: int = TIMED_STEPS + 1) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``run`` (the first warms up)."""
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _probe_batch(vocab_size: int, batch_size: int, length: int, num_labels: int, device: str) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    low = min(1000, vocab_size // 2)
    ids = torch.randint(low, min(vocab_size, low + 5000), (batch_size, length), generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": torch.randint(0, num_labels, (batch_size,), generator=generator).to(device)}


def probe_training_step(model, batch: dict, device: str, bf16: bool) -> dict[str, float]:
    """Seconds of one forward + backward pass and of what the loop does after it: the gradient norm clipped
    (the default ``grad_clip``), one AdamW step over ``model``'s trainable parameters and the gradients
    dropped (fastest of :data:`TIMED_STEPS` after a warm-up). The probe's model is thrown away afterwards."""
    import torch

    from tailor.models.classifier import forward_logits
    from tailor.runtime import autocast

    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    fwd_bwd, opt = math.inf, math.inf
    for _ in range(TIMED_STEPS + 1):
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, bf16):
            logits = forward_logits(model, batch)
        torch.nn.functional.cross_entropy(logits.float(), batch["labels"]).backward()
        _sync(device)
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        fwd_bwd, opt = min(fwd_bwd, t1 - t0), min(opt, time.perf_counter() - t1)
    return {"fwd_bwd": round(fwd_bwd, 5), "optimizer": round(opt, 5)}


def probe_forward(model, batch: dict, device: str, bf16: bool) -> float:
    """Seconds of one inference forward pass on ``batch`` (fastest of two after a warm-up)."""
    import torch

    from tailor.models.classifier import forward_logits
    from tailor.runtime import autocast

    model.eval()

    def run():
        with torch.inference_mode(), autocast(device, bf16):
            forward_logits(model, batch)

    return round(_fastest(run, device), 5)


def probe_head(hidden: int, device: str) -> float:
    """Multiply-accumulates per second of a linear head's full-batch Adam step on this machine."""
    import torch

    x = torch.randn(HEAD_PROBE_ROWS, hidden, device=device)
    y = torch.randint(0, HEAD_PROBE_CLASSES, (HEAD_PROBE_ROWS,), device=device)
    head = torch.nn.Linear(hidden, HEAD_PROBE_CLASSES).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)

    def run():
        torch.nn.functional.cross_entropy(head(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _fastest(run, device, repeats=4)
    return HEAD_PROBE_ROWS * hidden * HEAD_PROBE_CLASSES * 3 / max(seconds, 1e-6)


def probe_speed(base, methods: Sequence[str], *, batch_size: int, length: int, device: str, bf16: bool,
                threads: int) -> Speed:
    """Measure ``base`` (a resolved catalog base) on this machine at ``batch_size`` x ``length`` tokens.

    ``methods`` names the training steps to time (``full``, ``lora``; ``head`` needs only the forward
    passes). Runs with ``threads`` PyTorch threads and restores the previous count.
    """
    import torch

    from tailor.models.classifier import build_model

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        labels = ["a", "b"]
        model = build_model("full", base, labels)  # as full trains it (a pooled head, frozen embeddings)
        config = getattr(model, "encoder", model).config
        batch = _probe_batch(config.vocab_size, batch_size, length, len(labels), device)
        step_s = {}
        if "full" in methods:
            step_s["full"] = probe_training_step(model, batch, device, bf16)
        forward_s = {"train": probe_forward(model, batch, device, bf16),
                     "fp32": probe_forward(model, batch, device, False)}
        params, hidden = sum(p.numel() for p in model.parameters()), int(config.hidden_size)
        del model
        if "lora" in methods:
            lora = build_model("lora", base, labels)
            step_s["lora"] = probe_training_step(lora, batch, device, bf16)
            del lora
        return Speed(batch_size, length, step_s, forward_s, params, hidden, probe_head(hidden, device), threads,
                     device, bf16)
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------ cache


def machine_fingerprint() -> dict:
    """What makes a probe valid elsewhere: host, processor, core count and PyTorch version."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__}


def speed_key(base_name: str, device: str, threads: int, bf16: bool, batch_size: int, length: int) -> str:
    return f"{base_name}|{device}|threads={threads}|bf16={int(bf16)}|batch={batch_size}|length={length}"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if isinstance(data, dict) and data.get("format") == SPEED_FORMAT else {}


def _write_cache(path: Path, entries: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"format": SPEED_FORMAT, "entries": entries}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def measured_speed(base, methods: Sequence[str], *, batch_size: int, length: int, device: str, bf16: bool,
                   home: Path, threads: int | None = None, probe=probe_speed, now: float | None = None) -> Speed:
    """``base``'s speed at this batch shape: from ``home``'s cache when it holds a fresh probe of this machine
    with the same threads that covers ``methods``, else probed now (and cached).

    Args:
        threads: default: this training's share of the cores (:func:`tailor.cores.current_threads`), else
            :func:`tailor.runtime.usable_cores`.
        probe: the measuring function (tests pass a fixed one).
    """
    from tailor.cores import current_threads
    from tailor.runtime import usable_cores

    threads = threads or current_threads() or usable_cores()
    now = time.time() if now is None else now
    path = Path(home) / SPEED_FILE
    key = speed_key(base.name, device, threads, bf16, batch_size, length)
    entries = _read_cache(path)
    entry = entries.get(key)
    machine = machine_fingerprint()
    # every probe times the forward passes a head needs; the contrastive stage steps like full fine-tuning
    needed = {"full" if m == "contrastive" else m for m in methods if m != "head"}
    valid = bool(entry) and entry.get("machine") == machine and now - entry.get("measured_at", 0) < STALE_AFTER_S
    if valid and needed <= set(entry["speed"]["step_s"]):
        return Speed(**entry["speed"])
    missing = needed - set(entry["speed"]["step_s"]) if valid else needed
    speed = probe(base, sorted(missing), batch_size=batch_size, length=length, device=device, bf16=bf16,
                  threads=threads)
    if valid:  # keep the steps probed before, and their time
        speed = replace(speed, step_s={**entry["speed"]["step_s"], **speed.step_s})
        now = entry["measured_at"]
    entries = _read_cache(path)  # another process may have written meanwhile
    entries[key] = {"measured_at": now, "machine": machine, "speed": asdict(speed)}
    _write_cache(path, entries)
    return speed


def classification_estimates(methods: Sequence[str], base, train_enc, val_enc, *, n_test: int, num_labels: int, cfg,
                             device: str, bf16: bool, home: Path, started: float, trials: int = 1,
                             pool_lengths: Sequence[int] | None = None) -> dict[str, Estimate]:
    """An :class:`Estimate` per method in ``methods`` for a classification job, from ``base``'s measured
    speed (probed or cached) at the job's batch size and typical padded length.

    Args:
        base: the resolved base model; ``train_enc`` / ``val_enc``: the encoded training and validation rows.
        cfg: the job's :class:`~tailor.train.config.TrainConfig`.
        started: the job's ``time.monotonic()`` start; the data stage counts up to after the probe.
        pool_lengths: token counts of the usable unlabelled texts of a job that self-trains (None: no pool);
            adds the ``self_training`` stage.
    """
    train_lengths = [len(r) for r in train_enc.input_ids]
    val_lengths = [len(r) for r in val_enc.input_ids]
    speed = measured_speed(base, methods, batch_size=cfg.batch_size,
                           length=probe_length(train_lengths, cfg.batch_size, cfg.seed + 1), device=device,
                           bf16=bf16, home=home)
    elapsed_s = time.monotonic() - started
    return {method: estimate_classification(
        method, speed, train_lengths=train_lengths, val_lengths=val_lengths, n_test=n_test, num_labels=num_labels,
        batch_size=cfg.batch_size, epochs=cfg.epochs, seed=cfg.seed, head_epochs=cfg.head_epochs,
        elapsed_s=elapsed_s, trials=trials,
        gate_graphs_built=method in ("full", "contrastive") or graphs_built(home, base.name, method),
        contrastive_work=contrastive_workload(train_enc, cfg) if method == "contrastive" else (0, 0),
        self_training=self_training_rounds(train_enc, val_lengths, pool_lengths, cfg, method) if pool_lengths
        else ()) for method in methods}


def contrastive_workload(train_enc, cfg) -> tuple[int, int]:
    """``(steps, padded tokens)`` of the contrastive stage on ``train_enc``: its own batches
    (:func:`tailor.train.contrastive.contrastive_batches`, drawn as the loop draws them), each padded to its
    longest row."""
    from tailor.train.contrastive import contrastive_batches

    batches = contrastive_batches(train_enc, cfg)
    lengths = [len(r) for r in train_enc.input_ids]
    return len(batches), sum(len(set(b)) * max(lengths[i] for i in b) for b in batches)


# ------------------------------------------------------------------------------------------------- chat

CHAT_DECODE_PROBE_TOKENS = 8


def probe_chat_speed(model, tokenizer, batch: dict, *, device: str, bf16: bool,
                     train_tokens_per_s: float | None = None) -> dict:
    """A chat model's speed on this machine: forward + backward tokens/s on ``batch`` (a median-length
    training micro-batch, see :func:`tailor.train.sft.median_batch`), inference forward tokens/s on it, and
    seconds per greedily decoded token (``train_tokens_per_s``, when the job measured it already, is taken
    as is). The model's weights are left unchanged."""
    import torch

    from tailor.models.causal import ChatModel
    from tailor.runtime import autocast
    from tailor.train.sft import measure_tokens_per_s

    tokens = int(batch["attention_mask"].sum())
    train_tokens_per_s = train_tokens_per_s or measure_tokens_per_s(model, batch, device, bf16)
    was_training = model.training
    model.eval()

    def forward():
        with torch.inference_mode(), autocast(device, bf16):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    forward_s = _fastest(forward, device)
    chat = ChatModel(model, tokenizer, name="probe", device=device, max_length=256)
    prompt = [{"role": "user", "content": "Say something about the weather."}]
    decode_s = _fastest(lambda: chat.generate(prompt, max_tokens=CHAT_DECODE_PROBE_TOKENS), device, repeats=2)
    model.train(was_training)
    return {"train_tokens_per_s": round(train_tokens_per_s, 1), "forward_tokens_per_s": round(tokens / forward_s, 1),
            "decode_s_per_token": round(decode_s / CHAT_DECODE_PROBE_TOKENS, 5)}


def estimate_chat(speed: dict, *, train_lengths: Sequence[int], val_lengths: Sequence[int],
                  test_lengths: Sequence[int], batch_size: int, grad_accum: int, epochs: int, eval_every: int,
                  seed: int, samples: int, sample_max_tokens: int, label_answers: int = 0,
                  label_max_tokens: int = 8, elapsed_s: float = 0.0) -> Estimate:
    """The chat job's stages (see :func:`probe_chat_speed` for ``speed``).

    ``label_answers``: held-out conversations answered greedily for label metrics (0 when the references are
    not short labels).
    """
    batches = math.ceil(len(train_lengths) / batch_size)
    steps_per_epoch = math.ceil(batches / grad_accum)
    validations = epochs * (steps_per_epoch // eval_every + (steps_per_epoch % eval_every > 0)) if eval_every \
        else epochs
    tokens = sum(padded_tokens(train_lengths, batch_size, shuffle=True, seed=seed + e) for e in range(1, epochs + 1))
    forward = 1 / speed["forward_tokens_per_s"]
    stages = {"data": elapsed_s, "train": tokens / speed["train_tokens_per_s"],
              "validation": validations * padded_tokens(val_lengths, batch_size, shuffle=False) * forward,
              "test": (2 * padded_tokens(test_lengths, batch_size, shuffle=False) * forward
                       + (2 * min(samples, len(test_lengths)) * sample_max_tokens + label_answers * label_max_tokens)
                       * speed["decode_s_per_token"]),
              "save": SAVE_FIXED_S}
    return Estimate("chat-lora", {k: round(v, 1) for k, v in stages.items()}, epochs)


def chat_job_estimate(model, tokenizer, train_enc, val_enc, test_examples, test_enc, cfg, *, device: str,
                      bf16: bool, base_name: str, home: Path, started: float,
                      train_tokens_per_s: float | None = None, load_model=None) -> Estimate:
    """:func:`estimate_chat` for a chat job, its probe cached like the classifiers' (per base, device, threads,
    precision and batch shape); ``started`` is the job's ``time.monotonic()`` start. ``model`` may be None
    with ``load_model``, a function that returns it, called only when no cached probe fits (an estimate
    before launch loads the base only then)."""
    from tailor.cores import current_threads
    from tailor.eval.generation import LABEL_MAX_TOKENS, looks_like_labels, prompt_and_reference
    from tailor.runtime import usable_cores
    from tailor.train.sft import median_batch

    batch = median_batch(train_enc, cfg.batch_size, tokenizer.pad_token_id, device)
    length = math.ceil(batch["input_ids"].shape[1] / LENGTH_BUCKET) * LENGTH_BUCKET
    threads = current_threads() or usable_cores()
    path = Path(home) / SPEED_FILE
    key = "chat:" + speed_key(base_name, device, threads, bf16, cfg.batch_size, length)
    entry, machine, now = _read_cache(path).get(key), machine_fingerprint(), time.time()
    if entry and entry.get("machine") == machine and now - entry.get("measured_at", 0) < STALE_AFTER_S:
        speed = entry["speed"]
    else:
        model = model if model is not None else load_model()
        speed = probe_chat_speed(model, tokenizer, batch, device=device, bf16=bf16,
                                 train_tokens_per_s=train_tokens_per_s)
        entries = _read_cache(path)
        entries[key] = {"measured_at": now, "machine": machine, "speed": speed}
        _write_cache(path, entries)
    references = [prompt_and_reference(e)[1] for e in test_examples]
    return estimate_chat(speed, train_lengths=[len(r) for r in train_enc.input_ids],
                         val_lengths=[len(r) for r in val_enc.input_ids],
                         test_lengths=[len(r) for r in test_enc.input_ids], batch_size=cfg.batch_size,
                         grad_accum=cfg.grad_accum, epochs=cfg.epochs, eval_every=cfg.eval_every, seed=cfg.seed,
                         samples=cfg.samples, sample_max_tokens=cfg.sample_max_tokens,
                         label_answers=len(references) if looks_like_labels(references) else 0,
                         label_max_tokens=LABEL_MAX_TOKENS, elapsed_s=time.monotonic() - started)
