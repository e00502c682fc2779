"""Typed training configuration with named presets and validated overrides.

A preset is a JSON file in ``tailor/train/presets/``; CLI flags and Python keyword arguments override its
fields. Unknown keys and contradictory settings are rejected with a message, never silently ignored.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tailor.errors import UsageError

Method = Literal["auto", "full", "lora", "head", "contrastive"]
# The contrastive stage's defaults (method contrastive), measured with minilm-l6 on 8 rows per class, one core
# shared with other work: medical abstracts (5 labels, 128 tokens) macro-F1 46.7 with 20 steps of 16 rows at
# 5e-5 against 47.5 with 40 steps of 32 at 2e-5 (a fifth of the time) and 43.8 for a frozen head; finance
# tweets 43.2 and 44.8 against 37.3. At 32 rows per class 20 steps were too few (each row seen 3-4 times):
# finance tweets 0.507 / 0.568 with 20 steps, 0.530 / 0.622 with 60, 0.538 / 0.632 with 120 (two draws);
# medical abstracts 0.566 with 20, 0.590 with 60. So the steps grow with the rows.
CONTRASTIVE_STEPS = 20  # at least (8 rows per class of 3 labels: each row seen about 14 times)
CONTRASTIVE_PASSES = 16  # more rows: enough steps for each row to be seen this many times ...
CONTRASTIVE_MAX_STEPS = 160  # ... up to this many steps
CONTRASTIVE_BATCH = 16
CONTRASTIVE_LR = 5e-5
CONTRASTIVE_TEMPERATURE = 0.07
# The label-name prior's strength c (penalty c/n on the head's squared distance from the zero-shot head).
# Measured with a linear head (300 full-batch steps on all drawn rows) on frozen minilm-l6 embeddings (me5-small
# for THUCNews), full test sets, mean macro-F1 over 3 draws at 8 / 32 rows per class: without the prior 48.1 /
# 50.8 (medical abstracts), 40.5 / 51.8 (finance tweets), 69.7 / 78.2 (THUCNews titles); c=2 54.4 / 55.0, 42.2 /
# 53.5, 73.4 / 79.9; c=4 54.8 / 55.1, 41.4 / 52.9, 73.7 / 79.7; c=16 - / 56.2, 39.5 / 50.3, 72.3 / 78.7. A
# strong prior helps where the label names alone score well (abstracts 54.7) and hurts where they do not
# (tweets 23.0); choosing c per job by 4-fold cross-validation on the drawn rows was no better on average than 2.
LABEL_PRIOR = 2.0


class LoraTrainingConfig(BaseModel):
    """What every training config shares: strict keys, a LoRA sanity check, and validated overrides.

    Subclasses define the fields (``lora_r`` and ``lora_alpha`` among them) and ``config_name``, which
    names the config in error messages.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    config_name: ClassVar[str] = "training config"

    @model_validator(mode="after")
    def _check_consistency(self):
        if self.lora_alpha < self.lora_r / 8:
            raise ValueError(f"lora_alpha={self.lora_alpha} is far below lora_r={self.lora_r}: updates would vanish")
        return self

    def with_overrides(self, **overrides):
        """A copy with ``overrides`` applied (``None`` values are ignored), validated like a new config."""
        values = self.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return validate_config(type(self), values, self.config_name)


class TrainConfig(LoraTrainingConfig):
    """Everything that decides how a classifier is fine-tuned.

    Attributes are documented by their ``description``; ``tailor train --help`` shows the common ones.
    """

    base: str = Field("auto", description="catalog id, local Hugging Face directory, hub name, or auto "
                                          "(me5-small for mostly non-Latin text, else minilm-l6)")
    method: Method = Field("auto", description="full fine-tune, LoRA, frozen encoder + linear head, contrastive "
                                               "(few-shot: the encoder tuned on pairs of the labels, then a "
                                               "linear head), or auto")
    full_pooling: Literal["auto", "pooler", "mean"] = Field(
        "auto", description="what method full's head reads: the checkpoint's [CLS] pooler, the mean-pooled "
                            "embedding (head fitted first, then everything trains), or auto (the base's own: "
                            "mean for me5-small, whose pooler was never trained)")
    epochs: int = Field(4, ge=1, le=100, description="maximum epochs (early stopping may end sooner)")
    lr: float = Field(1e-4, gt=0, lt=1, description="peak learning rate for full fine-tuning")
    lora_lr: float = Field(1e-3, gt=0, lt=1, description="peak learning rate for LoRA")
    head_lr: float = Field(1e-2, gt=0, lt=1, description="learning rate of the linear head (method head)")
    head_epochs: int = Field(300, ge=1, le=10_000, description="full-batch steps for the linear head")
    label_prior: float = Field(
        LABEL_PRIOR, ge=0, le=1000,
        description="strength c of the label-name prior on a new linear head (methods head and contrastive, and "
                    "the head fitted before full fine-tuning with mean pooling): the head starts as the zero-shot "
                    "classifier of the label names and c/n times the squared distance of its weights from it is "
                    "added to the loss (n training rows), so a few rows adjust the label names' answer and many "
                    "outweigh it; 0 starts from random weights (see tailor.train.classify.fit_head)")
    contrastive_lr: float = Field(CONTRASTIVE_LR, gt=0, lt=1,
                                  description="peak learning rate of the encoder's contrastive stage (method "
                                              "contrastive)")
    contrastive_steps: int | None = Field(
        None, ge=1, le=100_000, description=f"optimizer steps of the contrastive stage (method contrastive); default: "
                                            f"each labelled row seen {CONTRASTIVE_PASSES} times, at least "
                                            f"{CONTRASTIVE_STEPS} and at most {CONTRASTIVE_MAX_STEPS} steps")
    contrastive_batch_size: int = Field(CONTRASTIVE_BATCH, ge=2, le=1024,
                                        description="rows per class-balanced batch of the contrastive stage")
    contrastive_objective: Literal["supcon", "pairs"] = Field(
        "supcon", description="the contrastive stage's loss: supervised contrastive over class-balanced batches, "
                              "or SetFit's cosine pairs (see tailor.train.contrastive)")
    contrastive_pairs_per_row: int = Field(20, ge=1, le=1000, description="objective pairs: positive and negative "
                                                                         "partners per row (SetFit's iterations)")
    contrastive_temperature: float = Field(CONTRASTIVE_TEMPERATURE, gt=0, le=1,
                                           description="temperature of the supervised contrastive loss")
    batch_size: int = Field(16, ge=1, le=1024)
    max_length: int = Field(128, ge=8, le=8192, description="tokens per text; longer texts are truncated")
    weight_decay: float = Field(0.01, ge=0, lt=1)
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps with a linear warm-up")
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip; 0 disables it")
    patience: int = Field(2, ge=0, description="epochs without a validation macro-F1 gain before stopping; 0 = never")
    class_weighting: Literal["auto", "balanced", "none"] = Field(
        "auto", description="balanced loss weights; auto applies them when the largest class is 1.5x the smallest")
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    val_size: float = Field(0.1, gt=0, lt=0.5, description="share of training rows held out for validation")
    test_size: float = Field(0.1, ge=0, lt=0.5, description="share held out for the test set when no eval file")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast where the hardware runs it natively (auto), or force one")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    time_budget_s: float | None = Field(None, gt=0, description="wall-clock budget for training (and search)")
    runtime: Literal["auto", "torch-fp32", "onnx-fp32", "onnx-int8"] = Field(
        "auto", description="inference runtime; auto: the fastest that passes the accuracy gate "
                            "(tailor.models.optimize.choose_runtime)")
    runtime_gate_points: float = Field(0.5, ge=0, le=100, description="macro-F1 points (0..100) a faster runtime "
                                                                       "may lose against torch-fp32")
    runtime_min_agreement: float = Field(0.98, ge=0, le=1, description="share of labels a faster runtime must "
                                                                       "give as torch-fp32 does; refused only when "
                                                                       "the validation rows' 95% Wilson interval "
                                                                       "lies below it")
    abstain_target_precision: float = Field(
        0.95, gt=0, le=1, description="accuracy the answered validation rows must reach for the version's "
                                      "suggested abstain threshold (0.95: one wrong answer in 20; see "
                                      "tailor.eval.abstain)")
    self_training_rounds: int = Field(2, ge=1, le=10, description="rounds of pseudo-labelling the unlabelled "
                                                                   "file (--unlabeled; tailor.train.self_training)")
    pseudo_label_precision: float = Field(0.9, gt=0, le=1, description="a pseudo-label needs the confidence at "
                                                                       "which validation answers are this accurate")
    pseudo_label_growth: float = Field(4.0, gt=0, le=100, description="pseudo-labels per label and round, as a "
                                                                      "multiple of its labelled rows")
    unlabeled_max_rows: int = Field(5000, ge=1, le=1_000_000, description="unlabelled texts used at most (a "
                                                                          "seeded sample of a larger file)")
    augment: int = Field(0, ge=0, le=20, description="edited copies of each labelled training row: words (or "
                                                     "characters) swapped, deleted, repeated or cut "
                                                     "(tailor.data.augment); 0: off")
    augment_rate: float = Field(0.1, gt=0, le=0.5, description="share of a text's words each augmentation edit "
                                                               "touches")


def validate_config(config_class, values: dict, what: str = "training config"):
    """Validate ``values`` into ``config_class``, turning pydantic's errors into one readable UsageError."""
    try:
        return config_class(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "config"
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}: {msg}")
        raise UsageError(f"invalid {what}: " + "; ".join(problems)) from None


def build_config(values: dict) -> TrainConfig:
    """Validate ``values`` into a TrainConfig (a UsageError lists every problem)."""
    return validate_config(TrainConfig, values)


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    files = resources.files("tailor.train").joinpath("presets").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


def load_preset(name: str = "default", **overrides) -> TrainConfig:
    """Load a shipped preset and apply ``overrides``.

    Raises:
        UsageError: unknown preset, unknown key or invalid value.
    """
    if name not in preset_names():
        raise UsageError(f"unknown preset {name!r}; presets are: {', '.join(preset_names())}")
    text = resources.files("tailor.train").joinpath(f"presets/{name}.json").read_text(encoding="utf-8")
    return build_config(json.loads(text)).with_overrides(**overrides)
