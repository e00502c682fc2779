"""The body of ``POST /v1/fine_tuning/jobs`` in OpenAI's shape, and how it maps onto Tailor's training options.

OpenAI's fields: ``model``, ``training_file``, ``validation_file``, ``suffix``, ``seed``, ``metadata``,
``method`` (``{"type": "supervised", "supervised": {"hyperparameters": {...}}}``) or the older top-level
``hyperparameters`` (``n_epochs``, ``batch_size``, ``learning_rate_multiplier``, each a value or ``"auto"``).
Tailor's own options go in ``method.tailor``: the training ``method`` (auto, full, lora, head, contrastive, or
zero_shot: a classifier built from ``labels`` alone, names or ``{name, description}`` objects; nothing trained, no
``training_file``, a ``validation_file`` to score it), the config ``preset``, a ``time_budget_s``, the file's
``text_column``/``label_column`` and, for chat jobs, ``strict`` (fail on conversations over the token limit instead
of truncating or dropping them). A job whose ``model`` is one of the tenant's fine-tuned classifiers continues
from its weights (a retrain, :mod:`tailor.train.retrain`):
``feedback`` adds its feedback labels, ``replay`` sets the share of its training rows mixed in, ``new_labels``
accepts labels it lacks; ``training_file`` may then be left out when ``feedback`` is true. A classification
job's ``unlabeled_file`` is a file of unlabelled texts it learns from by self-training
(:mod:`tailor.train.self_training`). Unknown keys are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tailor.errors import UsageError

CLASSIFICATION, CHAT = "classification", "chat"
ZERO_SHOT = "zero_shot"
Auto = Literal["auto"]


class OptionError(UsageError):
    """An option of the request that does not fit the job, named by ``param`` (its path in the body)."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Strict):
    """OpenAI's hyperparameters; ``auto`` takes the preset's value."""

    n_epochs: int | Auto = Field("auto", description="epochs (1-50) or auto")
    batch_size: int | Auto = Field("auto", description="examples per step (1-256) or auto")
    learning_rate_multiplier: float | Auto = Field("auto", description="scales the preset's learning rate (0-10)")

    # Field validators, not one model validator, so that an error names its field (param
    # hyperparameters.n_epochs) rather than the whole object.
    @field_validator("n_epochs")
    @classmethod
    def _check_epochs(cls, value):
        if value != "auto" and not 1 <= value <= 50:
            raise ValueError("n_epochs must be between 1 and 50")
        return value

    @field_validator("batch_size")
    @classmethod
    def _check_batch_size(cls, value):
        if value != "auto" and not 1 <= value <= 256:
            raise ValueError("batch_size must be between 1 and 256")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _check_multiplier(cls, value):
        if value != "auto" and not 0 < value <= 10:
            raise ValueError("learning_rate_multiplier must be above 0 and at most 10")
        return value


class SupervisedMethod(_Strict):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class ZeroShotLabel(_Strict):
    """A zero-shot job's label: its name and an optional one-line description (see
    :func:`tailor.models.zero_shot.label_prompts`)."""

    name: str = Field(..., min_length=1, max_length=200, description="the label, as predictions will name it")
    description: str | None = Field(None, max_length=500, description="one line saying what the label means")

    @field_validator("description")
    @classmethod
    def _check_description(cls, value):
        if value is not None and not value.strip():
            raise ValueError("the description is empty: leave it out, or say in words what the label means")
        return value


class TailorOptions(_Strict):
    """Tailor's extension: what OpenAI's API has no field for."""

    method: Literal["auto", "full", "lora", "head", "contrastive", "zero_shot"] = Field(
        "auto", description="classification: full fine-tune, LoRA, frozen encoder + linear head, contrastive "
                            "(few-shot: the encoder tuned on pairs of the labels, then a linear head), zero_shot "
                            "(a classifier from the label names in labels, nothing trained), or auto")
    labels: list[ZeroShotLabel] | None = Field(None, max_length=1000, validate_default=True,
                                               description="zero_shot: the labels, each a name or {name, "
                                                           "description}")
    preset: str = Field("default", description="training config preset (default, fast, quality)")
    time_budget_s: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="wall-clock budget in seconds")
    text_column: str | None = Field(None, max_length=200, description="text column of a text/label file")
    label_column: str | None = Field(None, max_length=200, description="label column of a text/label file")
    strict: bool | None = Field(None, description="chat: true fails the job on conversations longer than the token "
                                                  "limit (their lines named) instead of truncating or dropping them")
    feedback: bool | None = Field(None, description="retrain (model is a fine-tuned classifier): add the feedback "
                                                    "labels on its stored answers to the training rows")
    replay: float | None = Field(None, ge=0, le=100, description="retrain: old training rows mixed in, as a share "
                                                                 "of the new rows (default 4.0; 0: none)")
    new_labels: bool | None = Field(None, description="retrain: accept labels the model lacks, as new classes")
    unlabeled_file: str | None = Field(None, min_length=1, max_length=64,
                                       description="classification: id of an uploaded file of unlabelled texts "
                                                   "(kind texts, or text-label with its labels ignored) to learn "
                                                   "from by self-training")
    augment: int | None = Field(None, ge=0, le=20, description="classification: edited copies of each labelled "
                                                              "training row (words swapped, deleted, repeated or "
                                                              "cut; see tailor.data.augment); default 0, off")
    label_prior: float | None = Field(None, ge=0, le=1000,
                                      description="classification: strength of the label-name prior on a new head "
                                                  "(it starts as the zero-shot classifier of the label names, "
                                                  "pulled toward it by label_prior / rows); default 2, 0 off")
    redact_pii: bool | None = Field(None, description="replace e-mails, phones, card, ID and IBAN numbers in the "
                                                      "training and validation texts by [EMAIL], [PHONE], [CARD], "
                                                      "[ID], [IBAN] before training (always on for a tenant whose "
                                                      "redact_pii switch is on)")

    @field_validator("labels", mode="before")
    @classmethod
    def _names_as_labels(cls, value):
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    # declared after method, so that it can be read here; validate_default: a zero_shot job without labels is
    # refused naming this field
    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value, info: ValidationInfo):
        method = info.data.get("method")
        if value is None:
            if method == "zero_shot":
                raise ValueError("required for a zero_shot job: the label names, or {name, description} objects")
            return value
        if method != "zero_shot":
            raise ValueError("labels are for a zero_shot job (method.tailor.method = \"zero_shot\"); a trained "
                             "model learns its labels from the training file")
        from tailor.models.zero_shot import label_prompts

        try:  # the checks the zero-shot job makes: 2 labels or more, each once, each in words, prompts apart
            label_prompts([label.name for label in value], _descriptions(value))
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value

    def zero_shot_labels(self) -> tuple[list[str], dict[str, str]]:
        """A zero_shot job's ``(label names, {name: description})`` (labels without one left out)."""
        return [label.name for label in self.labels or ()], _descriptions(self.labels or ())

    def retrain_options(self) -> dict:
        """The retrain's options that were given: ``feedback``, ``replay``, ``new_labels``."""
        return self.model_dump(include={"feedback", "replay", "new_labels"}, exclude_none=True)


def _descriptions(labels) -> dict[str, str]:
    return {label.name: label.description for label in labels if label.description is not None}


class Method(_Strict):
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None
    tailor: TailorOptions | None = None


class JobCreate(_Strict):
    """A fine-tuning job request."""

    model: str = Field(..., min_length=1, max_length=300, description="base model: a catalog id (GET /v1/models)")
    training_file: str | None = Field(None, min_length=1, max_length=64,
                                      description="id of an uploaded file; required unless method.tailor.feedback "
                                                  "is true")
    validation_file: str | None = Field(None, max_length=64, description="held-out file for the test metrics")
    suffix: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$",
                               description="up to 40 lowercase letters, digits, '.', '_' or '-' for the model id")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    method: Method | None = None
    hyperparameters: Hyperparameters | None = Field(None, description="deprecated; use method.supervised")
    integrations: list[dict] | None = Field(None, max_length=0, description="not supported; leave empty")

    @field_validator("hyperparameters")
    @classmethod
    def _one_place_for_hyperparameters(cls, value, info: ValidationInfo):
        method = info.data.get("method")  # declared above, so already validated
        if value is not None and method is not None and method.supervised is not None:
            raise ValueError("give hyperparameters either in method.supervised or at the top level, not both")
        return value

    def chosen_hyperparameters(self) -> Hyperparameters:
        if self.method and self.method.supervised:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()

    def tailor_options(self) -> TailorOptions:
        return (self.method.tailor if self.method else None) or TailorOptions()


def resolve_training(body: JobCreate, task: str, method: str | None = None) -> tuple[dict, dict]:
    """Turn a request into ``(hyperparameters, overrides)``.

    ``hyperparameters`` is OpenAI's object with ``auto`` replaced by the values used; ``overrides`` are the
    keyword arguments for the training job (``epochs``, ``batch_size``, learning rate, ``method``...).
    ``method`` replaces the request's ``auto`` method (a retrain's parent's method).

    Raises:
        UsageError: an unknown preset, or options that do not fit the task.
    """
    options = body.tailor_options()
    if options.method == ZERO_SHOT:
        return _resolve_zero_shot(body, task)
    if method is not None and options.method == "auto":
        options = options.model_copy(update={"method": method})
    chosen = body.chosen_hyperparameters()
    if task == CHAT:
        from tailor.train.sft import load_chat_preset

        if options.method not in ("auto", "lora"):
            raise UsageError(f"chat models are fine-tuned with LoRA; method {options.method!r} is not available")
        if options.unlabeled_file:
            raise UsageError("unlabeled_file is for classification jobs (self-training on unlabelled texts); a chat "
                             "model learns from its conversations only")
        if options.augment:
            raise UsageError("augment is for classification jobs (edited copies of labelled texts); a chat model "
                             "learns from its conversations as written")
        if options.label_prior is not None:
            raise UsageError("label_prior is for classification jobs (a new head starts from the label names); a "
                             "chat model has no labels")
        preset, lr_field, overrides = load_chat_preset(options.preset), "lr", {"strict": options.strict or None}
    else:
        from tailor.train.config import load_preset

        preset = load_preset(options.preset)
        lr_field = {"lora": "lora_lr", "contrastive": "contrastive_lr"}.get(options.method, "lr")
        if options.strict:
            raise UsageError("strict checking of token lengths is for chat jobs; classification truncates long texts")
        overrides = {"method": options.method, "text_col": options.text_column, "label_col": options.label_column,
                     "augment": options.augment, "label_prior": options.label_prior}
    multiplier = 1.0 if chosen.learning_rate_multiplier == "auto" else chosen.learning_rate_multiplier
    epochs = preset.epochs if chosen.n_epochs == "auto" else chosen.n_epochs
    if task == CHAT:
        # OpenAI's batch_size is examples per optimizer step: micro-batches of the preset's size, accumulated.
        step_examples = preset.batch_size * preset.grad_accum if chosen.batch_size == "auto" else chosen.batch_size
        micro = min(preset.batch_size, step_examples)
        overrides.update({"batch_size": micro, "grad_accum": -(-step_examples // micro)})
        batch_size = micro * overrides["grad_accum"]
    else:
        batch_size = preset.batch_size if chosen.batch_size == "auto" else chosen.batch_size
        overrides["batch_size"] = batch_size
    overrides.update({"preset": options.preset, "epochs": epochs, lr_field: getattr(preset, lr_field) * multiplier,
                      "time_budget_s": options.time_budget_s, "redact_pii": options.redact_pii or None})
    hyperparameters = {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": multiplier}
    return hyperparameters, {k: v for k, v in overrides.items() if v is not None}


# Tailor's options that only training (or a retrain) reads: a zero_shot job refuses them rather than ignoring them
_TRAINING_ONLY = ("preset", "time_budget_s", "unlabeled_file", "augment", "label_prior", "strict", "feedback",
                  "replay", "new_labels")


def _resolve_zero_shot(body: JobCreate, task: str) -> tuple[dict, dict]:
    """A zero_shot job's ``({}, overrides)``: no hyperparameters (nothing is trained); the overrides name the
    validation file's columns and ask for its texts' personal data to be redacted.

    Raises:
        OptionError: a chat base, a hyperparameter or a training option.
    """
    options = body.tailor_options()
    if task == CHAT:
        raise OptionError("method.tailor.method", f"a zero_shot classifier needs an encoder base; {body.model} is a "
                                                  "chat model")
    where = "method.supervised.hyperparameters" if body.method and body.method.supervised else "hyperparameters"
    for name, value in body.chosen_hyperparameters().model_dump().items():
        if value != "auto":
            raise OptionError(f"{where}.{name}", "a zero_shot job trains nothing; leave it out or auto")
    for name in _TRAINING_ONLY:
        if getattr(options, name) not in (None, TailorOptions.model_fields[name].default):
            raise OptionError(f"method.tailor.{name}", "a zero_shot job trains nothing; leave it out")
    overrides = {"text_col": options.text_column, "label_col": options.label_column,
                 "redact_pii": options.redact_pii or None}
    return {}, {k: v for k, v in overrides.items() if v is not None}
