"""``--method auto``: full fine-tuning, contrastive few-shot or a linear head, from rows per class and the time
budget (LoRA on request)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from tailor.train.estimate import Estimate, format_seconds

# Measured: banking77 at 18 rows per class, head 0.876 macro-F1 in 14 s vs full fine-tuning 0.45 after 4 epochs;
# finance tweets at 540 per class, full 0.75 vs head 0.62. Below this, contrastive beat head on every draw measured
# at 8 rows per class (minilm-l6, 500 test rows): finance tweets 43.2/36.7/36.4 vs 37.3/33.3/35.2 macro-F1,
# medical abstracts 46.7/46.7 vs 43.8/44.5, for 14-41 s of training on 2 cores (head: 1-8 s).
FEW_SHOT_ROWS_PER_CLASS = 30


@dataclass(frozen=True)
class MethodChoice:
    """The chosen method, why, and the estimate of each method considered."""

    method: str
    reason: str
    estimates: dict[str, Estimate]


def choose_method(label_counts: dict[str, int], estimates: dict[str, Estimate],
                  time_budget_s: float | None) -> MethodChoice:
    """Choose how to fine-tune.

    Args:
        label_counts: training rows per class.
        estimates: the ``full``, ``head`` and ``contrastive`` estimates on this machine (see
            :func:`tailor.train.estimate.classification_estimates`); the budget is compared with their
            training stages (training and validation passes), which the deadline governs.
        time_budget_s: the training time left, or None.

    - Few rows per class (median below ``FEW_SHOT_ROWS_PER_CLASS``): ``contrastive`` (the encoder tuned on
      pairs of the labels, then a linear head) when its training fits the budget, else ``head`` (a linear
      head over the frozen encoder's sentence embeddings, seconds); both generalise from a handful of examples
      where full fine-tuning does not.
    - Otherwise ``full`` fine-tuning, the most accurate, when at least one epoch fits the budget (the
      training deadline then stops it after the epochs that fit); else ``head``.

    LoRA is never chosen for speed: on a CPU the backward pass through the activations dominates, and LoRA
    measured 15.9 s against full fine-tuning's 16.5 s per epoch on 1,620 tweets (and a lower macro-F1, 0.73 vs
    0.75). Its gains are in storage and in sharing one base between versions; ask for it with ``--method lora``.
    """
    n_rows = sum(label_counts.values())
    median = statistics.median(label_counts.values())
    full, head = estimates["full"], estimates["head"]
    if median < FEW_SHOT_ROWS_PER_CLASS:
        few = f"few examples per class (median {median:g} < {FEW_SHOT_ROWS_PER_CLASS})"
        contrastive = estimates.get("contrastive")
        if contrastive is not None and (time_budget_s is None or contrastive.training_s <= time_budget_s):
            return MethodChoice("contrastive", f"{few}: the encoder tuned contrastively on pairs of the labels, "
                                               f"then a linear head (estimated {format_seconds(contrastive.training_s)}"
                                               " of training here; +2.6 to +3.5 macro-F1 over a frozen encoder's "
                                               "head at 8 per class)", estimates)
        why = "" if contrastive is None else (f"; contrastive's {format_seconds(contrastive.training_s)} exceeds the "
                                              f"{time_budget_s:g}s budget")
        return MethodChoice("head", f"{few}: a linear head on the frozen encoder generalises best{why}", estimates)
    if time_budget_s is None or full.training_s <= time_budget_s:
        budget = "no time budget" if time_budget_s is None else f"fits the {time_budget_s:g}s budget"
        return MethodChoice("full", f"{n_rows} rows, median {median:g} per class: full fine-tuning is the most "
                                    f"accurate and {budget} (estimated {format_seconds(full.training_s)} of "
                                    "training)", estimates)
    per_epoch = full.per_epoch_s
    if per_epoch <= time_budget_s:
        fit = int(time_budget_s // per_epoch)
        return MethodChoice("full", f"about {fit} of {full.epochs} epochs of full fine-tuning fit the "
                                    f"{time_budget_s:g}s budget (estimated {format_seconds(per_epoch)} each); the "
                                    "deadline stops training after them", estimates)
    return MethodChoice("head", f"one epoch of full fine-tuning (estimated {format_seconds(per_epoch)}) exceeds the "
                                f"{time_budget_s:g}s budget; a linear head fits (estimated "
                                f"{format_seconds(head.training_s)})", estimates)


@dataclass(frozen=True)
class MethodPlan:
    """What a classification job will train, before it trains: the method, why, every method's estimate
    (each cut to the time budget), and the encoded training and validation rows the estimate counted;
    ``train_rows`` are the training rows with any augmented copies (``augmentation`` summarises them, None when
    ``augment`` is off)."""

    method: str
    reason: str
    estimates: dict[str, Estimate]
    train_enc: object
    val_enc: object
    train_rows: object
    augmentation: dict | None

    @property
    def estimate(self) -> Estimate:
        return self.estimates[self.method]


def plan_method(cfg, base, tokenizer, split, labels: list[str], *, n_test: int, device: str, bf16: bool, home,
                started: float, trials: int = 1, deadline: float | None = None,
                methods: tuple[str, ...] | None = None, pool_texts: list[str] | None = None) -> MethodPlan:
    """Encode the split's training and validation rows, estimate each method on this machine and pick ``auto``'s.

    What a classification job does when it starts (:func:`tailor.train.job.run_classification_job`) and what
    the estimate before launch shows (:func:`tailor.train.job.estimate_classification_job`).

    Args:
        cfg: the job's :class:`~tailor.train.config.TrainConfig` (its ``method`` may be ``auto``).
        base / tokenizer: the resolved base model and its tokenizer.
        split: the stratified split of the cleaned rows; ``labels``: the model's labels, in order. With
            ``cfg.augment``, edited copies of the training rows join them (:func:`tailor.data.augment.
            augment_dataset`); ``auto`` still judges by the user's own rows per class.
        n_test: the test rows the job will score.
        started: the job's ``time.monotonic()`` start (the estimate's data stage counts from it).
        deadline: the ``time.monotonic()`` the time budget ends at, or None.
        methods: the methods to estimate; default ``full``, ``head`` and ``contrastive`` for ``auto`` (what it
            chooses between), else the one asked for.
        pool_texts: the usable unlabelled texts of a job that self-trains (their rounds join the estimate).
    """
    import time

    from tailor.data.augment import augment_dataset
    from tailor.train.batching import encode
    from tailor.train.estimate import classification_estimates

    methods = methods or (("full", "head", "contrastive") if cfg.method == "auto" else (cfg.method,))
    label_id = {label: i for i, label in enumerate(labels)}
    train_rows, augmentation = augment_dataset(split.train, cfg.augment, rate=cfg.augment_rate, seed=cfg.seed)
    train_enc = encode(tokenizer, train_rows.texts, cfg.max_length, [label_id[y] for y in train_rows.labels])
    val_enc = encode(tokenizer, split.val.texts, cfg.max_length, [label_id[y] for y in split.val.labels])
    pool_lengths = [len(r) for r in encode(tokenizer, pool_texts, cfg.max_length).input_ids] if pool_texts else None
    estimates = classification_estimates(methods, base, train_enc, val_enc, n_test=n_test, num_labels=len(labels),
                                         cfg=cfg, device=device, bf16=bf16, home=home, started=started,
                                         trials=trials, pool_lengths=pool_lengths)
    budget_left = None if deadline is None else deadline - time.monotonic()
    method, reason = cfg.method, "chosen by the user"
    if method == "auto":
        choice = choose_method(split.train.label_counts(), estimates, budget_left)
        method, reason = choice.method, choice.reason
    return MethodPlan(method, reason, {m: e.within(budget_left) for m, e in estimates.items()}, train_enc, val_enc,
                      train_rows, augmentation if cfg.augment else None)
