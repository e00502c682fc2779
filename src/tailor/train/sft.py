"""Supervised fine-tuning of a causal chat model with LoRA: the config, its presets and the explicit loop.

``fit_lora`` trains only the LoRA weights that :func:`build_lora_model` adds. The loss is the mean
cross-entropy over assistant tokens (labels from :func:`tailor.data.chat.encode_chat`; every other token is
-100), accumulated over ``grad_accum`` length-grouped, dynamically padded micro-batches per optimizer step.
Every ``eval_every`` steps (and at the end of each epoch) it measures the validation loss, keeps the best
weights and writes a checkpoint from which ``resume`` continues at the same step with the same result.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from importlib import resources
from typing import ClassVar, Literal

from pydantic import Field

from tailor.cores import rebalance
from tailor.data.chat import IGNORE_INDEX, EncodedChat
from tailor.errors import UsageError
from tailor.runtime import autocast
from tailor.train.batching import length_grouped_batches
from tailor.train.checkpoint import Checkpointer, restore_trainable, trainable_state
from tailor.train.config import LoraTrainingConfig, validate_config
from tailor.train.progress import Reporter

PRESET_FOLDER = "presets/chat"


class ChatConfig(LoraTrainingConfig):
    """Everything that decides how a chat model is fine-tuned (LoRA SFT).

    The token limit of a conversation is ``max_length`` capped by the base model's context (its config's
    maximum positions, :func:`tailor.data.chat.token_limit`): 1024 by default, since a limit of 512 refused a
    few long examples of ordinary instruction data, while SmolLM2-135M's work per token grows only about 8%
    from 512 to 1024. Longer conversations are truncated or dropped (:func:`tailor.data.chat.fit_chat_lengths`)
    unless ``strict`` asks for them to fail the job.
    """

    config_name: ClassVar[str] = "chat training config"

    base: str = Field("smollm2-135m-instruct", description="catalog id or local Hugging Face causal-LM directory")
    epochs: int = Field(2, ge=1, le=100)
    lr: float = Field(2e-4, gt=0, lt=1, description="peak learning rate of the LoRA weights")
    batch_size: int = Field(4, ge=1, le=512, description="conversations per micro-batch")
    grad_accum: int = Field(4, ge=1, le=512, description="micro-batches per optimizer step")
    # ~8%: causal attention over 1024 positions is ~0.6M multiply-adds per token and layer against ~3.5M in
    # SmolLM2-135M's matrices (0.3M at 512); length-grouped batches make only the long conversations pay.
    max_length: int = Field(1024, ge=16, le=32768, description="tokens per conversation, capped by the model's "
                                                                "context; longer ones are truncated (or dropped "
                                                                "when no assistant token would remain)")
    strict: bool = Field(False, description="refuse a file with conversations over max_length (naming their "
                                            "lines) instead of truncating or dropping them")
    weight_decay: float = Field(0.0, ge=0, lt=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip; 0 disables it")
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                    min_length=1, description="module names that get LoRA adapters (attention and "
                                                              "MLP: lower loss per second than attention only)")
    eval_every: int = Field(0, ge=0, description="optimizer steps between validations; 0 = once per epoch")
    val_size: float = Field(0.1, gt=0, lt=0.5, description="share of conversations held out for validation")
    test_size: float = Field(0.1, ge=0, lt=0.5, description="share held out for the test set when no eval file")
    eval_examples: int = Field(64, ge=1, description="most held-out conversations scored in the final evaluation")
    samples: int = Field(3, ge=0, le=20, description="held-out prompts answered by base and tuned model")
    sample_max_tokens: int = Field(48, ge=1, le=1024, description="tokens per sample answer (CPU generation is slow)")
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    time_budget_s: float | None = Field(None, gt=0, description="wall-clock budget for training")


def build_chat_config(values: dict) -> ChatConfig:
    """Validate ``values`` into a ChatConfig (a UsageError lists every problem)."""
    return validate_config(ChatConfig, values, ChatConfig.config_name)


def chat_preset_names() -> list[str]:
    """Names of the shipped chat presets, sorted."""
    files = resources.files("tailor.train").joinpath(PRESET_FOLDER).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


def load_chat_preset(name: str = "default", **overrides) -> ChatConfig:
    """Load a shipped chat preset and apply ``overrides``.

    Raises:
        UsageError: unknown preset, unknown key or invalid value.
    """
    if name not in chat_preset_names():
        raise UsageError(f"unknown chat preset {name!r}; chat presets are: {', '.join(chat_preset_names())}")
    text = resources.files("tailor.train").joinpath(f"{PRESET_FOLDER}/{name}.json").read_text(encoding="utf-8")
    return build_chat_config(json.loads(text)).with_overrides(**overrides)


# ----------------------------------------------------------------------------------------------- model and batches


def build_lora_model(model, cfg: ChatConfig):
    """Wrap a causal LM in a PEFT LoRA model (only the adapters train), initialised from ``cfg.seed``."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():  # PEFT calls a transformers property that 5.x deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


def collate_chat(encoded: EncodedChat, indices, pad_id: int, device: str = "cpu") -> dict:
    """Right-pad the conversations at ``indices`` to their longest; labels are padded with -100."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    for k, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        input_ids[k, :n] = torch.tensor(encoded.input_ids[i])
        labels[k, :n] = torch.tensor(encoded.labels[i])
        attention[k, :n] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "labels": labels.to(device)}


def _labelled_logits(model, batch: dict):
    """``(logits, targets)`` at the positions whose next token is labelled, as a ``(n, vocab)`` matrix.

    Where the model is a plain decoder followed by its output embedding (Llama, Qwen, Mistral, SmolLM, ...),
    the vocabulary projection is applied to the labelled positions only, which skips a fifth of the
    compute of a 135M model and most of the memory of the logits; other models get the full forward pass.
    """
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if getattr(base.config, "final_logit_softcapping", None) is None and head is not None \
            and hasattr(base, "model"):
        hidden = base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return head(hidden[:, :-1][mask]), targets[mask]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits[:, :-1][mask], targets[mask]


def token_loss(model, batch: dict, device: str, bf16: bool):
    """``(summed cross-entropy, correct next-token predictions, counted tokens)`` over the labelled tokens."""
    import torch

    with autocast(device, bf16):
        logits, targets = _labelled_logits(model, batch)
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    correct = int((logits.argmax(-1) == targets).sum())
    return loss, correct, int(targets.numel())


def assistant_loss(model, encoded: EncodedChat, pad_id: int, device: str, bf16: bool = False,
                   batch_size: int = 8) -> dict:
    """Mean cross-entropy over assistant tokens, its perplexity and next-token accuracy (the model in eval mode).

    Returns:
        ``{"loss", "perplexity", "token_accuracy", "tokens"}``.
    """
    import torch

    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    lengths = [len(r) for r in encoded.input_ids]
    with torch.inference_mode():
        for idx in length_grouped_batches(lengths, batch_size, shuffle=False):
            loss, ok, n = token_loss(model, collate_chat(encoded, idx, pad_id, device), device, bf16)
            total, correct, count = total + float(loss), correct + ok, count + n
    model.train(was_training)
    mean = total / max(count, 1)
    return {"loss": round(mean, 5), "perplexity": round(math.exp(min(mean, 50.0)), 4),
            "token_accuracy": round(correct / max(count, 1), 5), "tokens": count}


def median_batch(encoded: EncodedChat, batch_size: int, pad_id: int, device: str = "cpu") -> dict:
    """A micro-batch of ``batch_size`` conversations of about the median length (for timing)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
    start = max(0, min(len(order) - batch_size, len(order) // 2 - batch_size // 2))
    return collate_chat(encoded, order[start:start + batch_size], pad_id, device)


def measure_tokens_per_s(model, batch: dict, device: str, bf16: bool) -> float:
    """Training throughput on this machine: tokens per second of one timed forward + backward pass on ``batch``.

    A first untimed pass warms the kernels up and the faster of two timed passes counts (other work on the
    machine only slows a pass down); gradients are cleared afterwards, so the model is unchanged.
    """
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss, _, n = token_loss(model, batch, device, bf16)
        (loss / max(n, 1)).backward()
        timings.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    seconds = min(timings[1:])
    return int(batch["attention_mask"].sum()) / seconds


# ----------------------------------------------------------------------------------------------- the loop


@dataclass
class SftOutcome:
    """What the loop did.

    Attributes:
        history: one row per validation (``step``, ``epoch``, ``train_loss``, ``train_mean_token_accuracy``,
            ``valid_loss``, ``valid_mean_token_accuracy``, ``total_steps``, ``seconds``).
        best_step / best_valid_loss: the step whose weights the model now holds and its validation loss.
        stop_reason: ``completed`` or ``time_budget``.
        steps / total_steps: optimizer steps done and planned.
        resumed_from_step: the step a resumed run continued after (0 when it started fresh).
        tokens_per_s: tokens (all tokens of the batches) per second of training in this process.
    """

    history: list[dict] = field(default_factory=list)
    best_step: int = 0
    best_valid_loss: float = math.inf
    stop_reason: str = "completed"
    steps: int = 0
    total_steps: int = 0
    resumed_from_step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    tokens_per_s: float = 0.0


def _epoch_groups(train: EncodedChat, cfg: ChatConfig, epoch: int) -> list[list[list[int]]]:
    """The micro-batches of ``epoch``, grouped ``grad_accum`` at a time (one group per optimizer step)."""
    lengths = [len(r) for r in train.input_ids]
    batches = length_grouped_batches(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch)
    return [batches[i:i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]


def _labelled_tokens(train: EncodedChat, group: list[list[int]]) -> int:
    return sum(1 for batch in group for i in batch for t in train.labels[i][1:] if t != IGNORE_INDEX)


def _rng_state(device: str) -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def fit_lora(model, train: EncodedChat, val: EncodedChat, cfg: ChatConfig, *, pad_id: int, device: str,
             bf16: bool, reporter: Reporter, checkpointer: Checkpointer | None = None, resume: bool = False,
             deadline: float | None = None) -> SftOutcome:
    """Train ``model``'s LoRA weights on assistant tokens with AdamW, linear warm-up/decay and accumulation.

    Args:
        model: a PEFT model from :func:`build_lora_model` (only the adapters require gradients).
        train / val: encoded conversations (labels -100 outside assistant replies).
        cfg: epochs, batch size, accumulation, learning rate, clipping, eval interval, seed.
        pad_id: the padding token id (labels ignore padding whatever the id).
        deadline: ``time.monotonic()`` after which training stops (after a last validation).
        checkpointer / resume: write a checkpoint at every validation; with ``resume`` continue from the
            last one (same step, same data order, same RNG), giving the weights an uninterrupted run gives.

    Returns:
        An :class:`SftOutcome`; ``model`` holds the weights of the best validation loss.
    """
    import torch

    from tailor.train.classify import linear_schedule, seed_everything

    seed_everything(cfg.seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(_epoch_groups(train, cfg, 1))
    total = steps_per_epoch * cfg.epochs
    scheduler = linear_schedule(optimizer, int(cfg.warmup_ratio * total), total)
    eval_every = cfg.eval_every or steps_per_epoch
    outcome = SftOutcome(total_steps=total)
    best_state, start_epoch, start_group = None, 1, 0

    saved = checkpointer.load() if (checkpointer and resume) else None
    if saved:
        last, best_state = saved
        restore_trainable(model, last["weights"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        _set_rng_state(last["rng"])
        outcome = last["outcome"]
        start_epoch, start_group = last["epoch"], last["group"]
        outcome.resumed_from_step, outcome.stop_reason = outcome.steps, "completed"  # a new time budget
        reporter.message(f"resumed from the checkpoint at step {outcome.steps}/{total}", step=outcome.steps)

    window = {"loss": 0.0, "correct": 0, "tokens": 0}
    t_train, tokens_before = time.perf_counter(), outcome.tokens_seen
    for epoch in range(start_epoch, cfg.epochs + 1):
        groups = _epoch_groups(train, cfg, epoch)
        first = start_group if epoch == start_epoch else 0
        reporter.start(f"epoch {epoch}/{cfg.epochs}", len(groups) - first)
        t0 = time.perf_counter()
        for g in range(first, len(groups)):
            rebalance()  # this training's share of the machine's cores (tailor.cores)
            n_labelled = max(1, _labelled_tokens(train, groups[g]))
            for idx in groups[g]:
                batch = collate_chat(train, idx, pad_id, device)
                loss, correct, n = token_loss(model, batch, device, bf16)
                (loss / n_labelled).backward()
                window["loss"] += float(loss.detach())
                window["correct"] += correct
                window["tokens"] += n
                outcome.tokens_seen += int(batch["attention_mask"].sum())
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            outcome.steps += 1
            reporter.advance(1, step=outcome.steps, loss=window["loss"] / max(1, window["tokens"]),
                             tok_s=(outcome.tokens_seen - tokens_before) / max(1e-9, time.perf_counter() - t_train))
            out_of_time = deadline is not None and time.monotonic() > deadline
            if outcome.steps % eval_every and g != len(groups) - 1 and not out_of_time:
                continue
            row = {"step": outcome.steps, "epoch": epoch, "total_steps": total,
                   "train_loss": round(window["loss"] / max(1, window["tokens"]), 5),
                   "train_mean_token_accuracy": round(window["correct"] / max(1, window["tokens"]), 5)}
            valid = assistant_loss(model, val, pad_id, device, bf16, cfg.batch_size)
            row.update(valid_loss=valid["loss"], valid_mean_token_accuracy=valid["token_accuracy"],
                       seconds=round(time.perf_counter() - t0, 2))
            window = {"loss": 0.0, "correct": 0, "tokens": 0}
            outcome.history.append(row)
            if row["valid_loss"] < outcome.best_valid_loss:
                outcome.best_valid_loss, outcome.best_step = row["valid_loss"], outcome.steps
                best_state = trainable_state(model)
                if checkpointer:
                    checkpointer.save_best(best_state)
            next_epoch, next_group = (epoch, g + 1) if g + 1 < len(groups) else (epoch + 1, 0)
            if out_of_time:
                outcome.stop_reason = "time_budget"
            if checkpointer:
                checkpointer.save_epoch({"epoch": next_epoch, "group": next_group, "weights": trainable_state(model),
                                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                         "rng": _rng_state(device), "outcome": outcome})
            reporter.metrics(outcome.steps, row)
            if out_of_time:
                break
        reporter.finish()
        if outcome.stop_reason == "time_budget":
            break
    outcome.train_seconds = round(time.perf_counter() - t_train, 2)
    outcome.tokens_per_s = round((outcome.tokens_seen - tokens_before) / max(1e-9, outcome.train_seconds), 1)
    if best_state:
        restore_trainable(model, best_state)
    return outcome
