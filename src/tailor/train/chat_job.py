"""A chat fine-tuning job end to end: conversations → LoRA SFT → base-vs-tuned evaluation → register.

This is what ``tailor train FILE --task chat`` runs. Like the classification job, every stage is a library
call; this module orders and times them and writes the version's artifacts into a staging directory that
the registry publishes atomically.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import tailor
from tailor.cores import holding_cores
from tailor.data.chat import ChatDataset
from tailor.errors import DataError, UsageError
from tailor.registry.entities import ModelVersion
from tailor.settings import Settings, get_settings
from tailor.train.progress import RecordingReporter, Reporter

log = logging.getLogger(__name__)
TOKENS_PER_S_SOURCE = "measured: one timed forward/backward pass of a median-length training batch on the base model"


@dataclass
class ChatTrainResult:
    """What a finished chat job produced.

    Attributes:
        version: the registered model version.
        metrics: ``metrics.json`` (test loss/perplexity of base and tuned, label metrics, best valid loss).
        evaluation: the full base-vs-tuned evaluation, with sample answers.
        data_report: the chat data report.
        timings: seconds per stage and in total.
        history: the loop's validation rows (``step``, ``train_loss``, ``valid_loss``, ...).
    """

    version: ModelVersion
    metrics: dict
    evaluation: dict
    data_report: dict
    config: dict
    timings: dict
    history: list[dict]
    best_step: int
    stop_reason: str
    tokens_per_s: float

    def summary(self) -> dict:
        """The one JSON object that ``tailor train --task chat --json`` prints."""
        return {"model": self.version.ref, "name": self.version.name, "version": self.version.version,
                "task": "chat", "method": "lora", "base_model": self.version.base_model, "metrics": self.metrics,
                "timings": self.timings, "examples": self.data_report["examples"], "best_step": self.best_step,
                "stop_reason": self.stop_reason, "tokens_per_s": self.tokens_per_s}


def split_conversations(dataset: ChatDataset, val_size: float, test_size: float,
                        seed: int) -> tuple[ChatDataset, ChatDataset, ChatDataset]:
    """A seeded random ``(train, valid, test)`` split; valid and test get at least one conversation each
    when their share is non-zero.

    Raises:
        DataError: fewer than 3 conversations to split.
    """
    n = len(dataset)
    n_val = max(1, round(n * val_size))
    n_test = max(1, round(n * test_size)) if test_size else 0
    if n - n_val - n_test < 1:
        raise DataError(f"only {n} conversations: too few to hold out validation and test examples")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return dataset.subset(sorted(train)), dataset.subset(sorted(val)), dataset.subset(sorted(test))


def shared_system_prompt(dataset: ChatDataset) -> str | None:
    """The system message every conversation starts with, when they all share one."""
    firsts = {e.messages[0]["content"] if e.messages[0]["role"] == "system" else None for e in dataset.examples}
    return firsts.pop() if len(firsts) == 1 else None


def _load(data, settings: Settings, redact_pii: bool = False) -> ChatDataset:
    """The conversations of ``data``; with ``redact_pii``, every message's personal data replaced by placeholders
    (:func:`tailor.data.pii.redact`)."""
    from tailor.data.chat import ChatExample, read_chat_dataset
    from tailor.data.pii import redact

    dataset = data if isinstance(data, ChatDataset) else read_chat_dataset(data, max_bytes=settings.max_file_bytes)
    if not redact_pii:
        return dataset
    return ChatDataset([ChatExample([{**message, "content": redact(message["content"])[0]}
                                     if isinstance(message.get("content"), str) else message
                                     for message in example.messages], example.line)
                        for example in dataset.examples], dataset.source)


def _resolve_chat_base(name: str, reporter: Reporter):
    from tailor.catalog import CATALOG, resolve_base

    if name in CATALOG and CATALOG[name].task != "chat":
        chat_ids = ", ".join(b.id for b in CATALOG.values() if b.task == "chat")
        raise UsageError(f"base model {name!r} is a {CATALOG[name].task} model; chat fine-tuning needs a chat "
                         f"base ({chat_ids}) or a local causal-LM directory")
    return resolve_base(name, progress=reporter)


@dataclass
class PreparedConversations:
    """A chat job's conversations fitted to its token limit and split, with their tokenization.

    Attributes:
        cfg: the config, its ``max_length`` capped by the base's context.
        raw / raw_enc / length_fit: the conversations kept within the limit, their tokens, and what the limit
            truncated and dropped; ``eval_raw``: the eval file's kept conversations (None without one).
        train / val / test and their ``*_enc``: the split (test: the eval file's, or a held-out share, cut to
            ``cfg.eval_examples``).
    """

    cfg: object
    raw: ChatDataset
    raw_enc: object
    length_fit: object
    eval_raw: ChatDataset | None
    train: ChatDataset
    val: ChatDataset
    test: ChatDataset
    train_enc: object
    val_enc: object
    test_enc: object


def prepare_conversations(raw: ChatDataset, eval_raw: ChatDataset | None, tokenizer, base, cfg,
                          reporter: Reporter) -> PreparedConversations:
    """Fit the conversations to the token limit (saying what was cut), split and tokenize them, as a chat job
    does before training (and its estimate before launch, :func:`estimate_chat_job`)."""
    from tailor.data.chat import encode_chat, fit_chat_lengths, token_limit
    from tailor.models.causal import context_length

    limit = token_limit(cfg.max_length, context_length(base.path))
    if limit < cfg.max_length:
        reporter.message(f"max_length {cfg.max_length} is above {base.name}'s context: conversations get at most "
                         f"{limit} tokens", max_length=limit)
        cfg = cfg.with_overrides(max_length=limit)
    raw, raw_enc, length_fit = fit_chat_lengths(raw, tokenizer, cfg.max_length, strict=cfg.strict)
    _report_length_fit(reporter, length_fit, "")
    if eval_raw is not None:
        eval_raw, _, eval_fit = fit_chat_lengths(eval_raw, tokenizer, cfg.max_length, strict=cfg.strict)
        _report_length_fit(reporter, eval_fit, "eval file: ")
    train, val, test = split_conversations(raw, cfg.val_size, 0 if eval_raw is not None else cfg.test_size, cfg.seed)
    test = eval_raw if eval_raw is not None else test
    test = test.subset(range(min(len(test), cfg.eval_examples)))
    return PreparedConversations(cfg, raw, raw_enc, length_fit, eval_raw, train, val, test,
                                 encode_chat(tokenizer, train.examples, cfg.max_length),
                                 encode_chat(tokenizer, val.examples, cfg.max_length),
                                 encode_chat(tokenizer, test.examples, cfg.max_length))


def estimate_chat_job(data, *, eval_file=None, preset: str = "default", settings: Settings | None = None,
                      redact_pii: bool = False, **overrides) -> dict:
    """How long :func:`run_chat_job` would take on this machine, without training: the job's own preparation
    (:func:`prepare_conversations`) and estimate (:func:`tailor.train.estimate.chat_job_estimate`). The
    base's speed is probed once (loading the base: seconds) and cached in the storage root.

    Returns:
        The shape of :func:`tailor.train.job.estimate_classification_job`'s answer, with the one method a chat
        job has (``lora``) and ``labels`` None.

    Raises:
        DataError: invalid conversations. UsageError: a bad option or a non-chat base model.
    """
    from tailor.models.causal import load_causal_lm, load_chat_tokenizer
    from tailor.runtime import pick_device, setup_torch, supports_bf16
    from tailor.train.estimate import chat_job_estimate
    from tailor.train.sft import build_lora_model, load_chat_preset

    settings = settings or get_settings()
    started = time.monotonic()
    cfg = load_chat_preset(preset, **overrides)
    reporter = RecordingReporter()
    raw = _load(data, settings, redact_pii)
    eval_raw = _load(eval_file, settings, redact_pii) if eval_file is not None else None
    setup_torch()
    base = _resolve_chat_base(cfg.base, reporter)
    tokenizer = load_chat_tokenizer(base.path)
    prepared = prepare_conversations(raw, eval_raw, tokenizer, base, cfg, reporter)
    device = pick_device(prepared.cfg.device)
    bf16 = prepared.cfg.precision == "bf16" or (prepared.cfg.precision == "auto" and supports_bf16(device))

    def load_model():
        return build_lora_model(load_causal_lm(base.path, device)[0], prepared.cfg)

    estimate = chat_job_estimate(None, tokenizer, prepared.train_enc, prepared.val_enc, prepared.test.examples,
                                 prepared.test_enc, prepared.cfg, device=device, bf16=bf16, base_name=base.name,
                                 home=settings.home, started=started, load_model=load_model)
    reason = "chat models are fine-tuned with LoRA"
    return {"task": "chat", "base_model": base.name, "base_reason": "chosen by the user", "method": "lora",
            "method_reason": reason, "auto_method": "lora", "auto_reason": reason,
            "estimates": {"lora": estimate.as_dict()},
            "rows": {"train": len(prepared.train), "validation": len(prepared.val), "test": len(prepared.test)},
            "labels": None}


@holding_cores("chat")
def run_chat_job(data, *, eval_file=None, name: str | None = None, tenant: str = "default",
                 preset: str = "default", resume: bool = False, run_dir: str | Path | None = None,
                 reporter: Reporter | None = None, settings: Settings | None = None, build_engine: bool = True,
                 redact_pii: bool = False, actor: str | None = None, **overrides) -> ChatTrainResult:
    """Fine-tune a chat model with LoRA on ``data`` and register it.

    Args:
        data: a JSONL file of conversations (chat or instruction format) or a :class:`ChatDataset`.
        eval_file: held-out conversations for the test comparison; without one, a test split is cut.
        name: the registry name (default: from the file name).
        preset: a chat preset (``default``, ``fast``); ``overrides`` (``epochs``, ``lr``, ``base``,
            ``max_length``, ``time_budget_s``, ``seed``, ...) replace its fields.
        resume: continue from the last checkpoint in the run directory.
        run_dir: the checkpoint directory (the job service passes ``<home>/runs/<job-id>``); default
            ``<home>/runs/<run id derived from the data, config, tenant and name>``.
        build_engine: once registered, build the version's serving engine (:func:`build_serving_engine`), so
            ``tailor chat`` and the API answer its first request without a build.
        redact_pii: replace e-mails, phones, card, ID and IBAN numbers in every message (training and
            evaluation) by ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ID]``, ``[IBAN]`` before anything else sees them.
        actor: who registers the version (``cli:<os user>`` from the CLI), recorded as ``lineage["actor"]``.

    Conversations longer than ``max_length`` (capped by the base model's context) are truncated, or dropped
    when no assistant token would remain; an event and the data report's ``over_limit`` name their lines.
    With ``strict=True`` (``tailor train --task chat --strict``, the API's ``method.tailor.strict``) they
    fail the job instead.

    Returns:
        A :class:`ChatTrainResult`.

    Raises:
        DataError: invalid conversations (line and field named), or, with ``strict``, too long for ``max_length``.
        UsageError: a bad option or a non-chat base model.
    """
    from tailor.data.chat import build_chat_report
    from tailor.eval.generation import evaluate_chat
    from tailor.models.causal import ChatModel, load_causal_lm, load_chat_tokenizer
    from tailor.registry.service import open_registry
    from tailor.runtime import pick_device, setup_torch, supports_bf16
    from tailor.train.checkpoint import Checkpointer, run_id_for
    from tailor.security.crypto import open_keyring
    from tailor.train.estimate import chat_job_estimate, took_message
    from tailor.train.job import job_name
    from tailor.train.sft import build_lora_model, fit_lora, load_chat_preset, measure_tokens_per_s, median_batch

    settings = settings or get_settings()
    reporter = reporter or RecordingReporter()
    cfg = load_chat_preset(preset, **overrides)
    name = job_name(data, name)
    t_start = time.monotonic()
    deadline = t_start + cfg.time_budget_s if cfg.time_budget_s else None
    timings: dict[str, float] = {}

    raw = _load(data, settings, redact_pii)
    eval_raw = _load(eval_file, settings, redact_pii) if eval_file is not None else None
    setup_torch()
    base = _resolve_chat_base(cfg.base, reporter)
    reporter.message(f"base model: {base.name}", base=base.name)
    tokenizer = load_chat_tokenizer(base.path)
    prepared = prepare_conversations(raw, eval_raw, tokenizer, base, cfg, reporter)
    cfg, raw, raw_enc, length_fit, eval_raw = (prepared.cfg, prepared.raw, prepared.raw_enc, prepared.length_fit,
                                               prepared.eval_raw)
    train, val, test = prepared.train, prepared.val, prepared.test
    train_enc, val_enc, test_enc = prepared.train_enc, prepared.val_enc, prepared.test_enc

    device = pick_device(cfg.device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and supports_bf16(device))
    base_model, _ = load_causal_lm(base.path, device)
    model = build_lora_model(base_model, cfg)
    tokens_per_s = measure_tokens_per_s(model, median_batch(train_enc, cfg.batch_size, tokenizer.pad_token_id, device),
                                        device, bf16)
    report = build_chat_report(raw, raw_enc, max_length=cfg.max_length, epochs=cfg.epochs, tokens_per_s=tokens_per_s,
                               tokens_per_s_source=TOKENS_PER_S_SOURCE, eval_ds=eval_raw, length_fit=length_fit)
    reporter.message(f"data: {report['examples']} conversations ({len(train)} train, {len(val)} valid, {len(test)} "
                     f"test), {report['tokens']['total']} tokens, {report['assistant_tokens']['total']} trained on; "
                     f"estimated {report['estimate']['seconds']:.0f}s of training", examples=report["examples"])
    for warning in report["warnings"]:
        reporter.message(f"warning: {warning}")
    timings["data_s"] = round(time.monotonic() - t_start, 2)
    estimate = chat_job_estimate(model, tokenizer, train_enc, val_enc, test.examples, test_enc, cfg, device=device,
                                 bf16=bf16, base_name=base.name, home=settings.home, started=t_start,
                                 train_tokens_per_s=tokens_per_s)
    reporter.message(f"estimate: {estimate.describe()}", estimate=estimate.as_dict())
    timings["estimated_s"] = estimate.total_s

    sources = [raw.source.sha256 if raw.source else None, eval_raw.source.sha256 if eval_raw and eval_raw.source else None]
    run_dir = Path(run_dir) if run_dir is not None else \
        settings.home / "runs" / run_id_for(sources, cfg.model_dump(), "chat-lora", tenant, name)
    checkpointer = Checkpointer(run_dir, keyring=open_keyring(settings.registry_url, settings), tenant=tenant)
    t_fit = time.monotonic()
    outcome = fit_lora(model, train_enc, val_enc, cfg, pad_id=tokenizer.pad_token_id, device=device, bf16=bf16,
                       reporter=reporter, checkpointer=checkpointer, resume=resume, deadline=deadline)
    timings["train_s"] = round(time.monotonic() - t_fit, 2)
    reporter.message(f"training done: {outcome.steps}/{outcome.total_steps} steps, best valid loss "
                     f"{outcome.best_valid_loss:.4f} at step {outcome.best_step} ({outcome.stop_reason}), "
                     f"{outcome.tokens_per_s:.0f} tokens/s", stop_reason=outcome.stop_reason)

    t_eval = time.monotonic()
    system_prompt = shared_system_prompt(train)
    chat = ChatModel(model, tokenizer, name=name, device=device, max_length=cfg.max_length + cfg.sample_max_tokens,
                     system_prompt=system_prompt)
    evaluation = evaluate_chat(chat, test.examples, test_enc, bf16=bf16, samples=cfg.samples,
                               sample_max_tokens=cfg.sample_max_tokens, batch_size=cfg.batch_size)
    evaluation["model"] = f"{name} (new version) vs {base.name}"
    timings["eval_s"] = round(time.monotonic() - t_eval, 2)
    losses = evaluation["loss"]
    reporter.message(f"test: loss {losses['base']['loss']:.4f} → {losses['tuned']['loss']:.4f}, perplexity "
                     f"{losses['base']['perplexity']:.2f} → {losses['tuned']['perplexity']:.2f} (base → fine-tuned)")
    metrics = chat_metrics(evaluation, outcome)

    registry = open_registry(settings)
    timings["total_s"] = round(time.monotonic() - t_start, 2)
    lineage = {"dataset": raw.source.__dict__ if raw.source else None,
               "eval_dataset": eval_raw.source.__dict__ if eval_raw is not None and eval_raw.source else None,
               "rows": {"train": len(train), "valid": len(val), "test": len(test)}, "data_report": report,
               "base_model": base.name, "method": "lora", "tailor_version": tailor.__version__, "timings": timings,
               "stop_reason": outcome.stop_reason, "resumed_from_step": outcome.resumed_from_step,
               "device": device, "precision": "bf16" if bf16 else "fp32", "tokens_per_s": outcome.tokens_per_s}
    if actor:
        lineage["actor"] = actor
    with registry.artifacts.stage() as staged:
        write_chat_artifacts(staged, model, tokenizer, base.name, system_prompt, cfg, metrics, report, evaluation,
                             outcome)
        version = registry.publish_version(tenant, name, staged, task="chat", base_model=base.name, method="lora",
                                           params=cfg.model_dump(), metrics=metrics, lineage=lineage)
    checkpointer.clear()
    reporter.message(took_message(timings["total_s"], timings["estimated_s"]), timings=dict(timings))
    reporter.message(f"registered {version.ref}", model=version.ref)
    if build_engine:
        timings["engine_s"] = build_serving_engine(version, settings, reporter)
    return ChatTrainResult(version, metrics, evaluation, report, cfg.model_dump(), timings, outcome.history,
                           outcome.best_step, outcome.stop_reason, outcome.tokens_per_s)


def _report_length_fit(reporter: Reporter, fit, prefix: str) -> None:
    """A job event naming the conversations the token limit truncated and dropped (none when all fit)."""
    if fit.describe():
        summary = fit.summary()
        reporter.message(prefix + fit.describe(), max_length=fit.max_length,
                         truncated=summary["truncated"], dropped=summary["dropped"])


def build_serving_engine(version: ModelVersion, settings: Settings, reporter: Reporter) -> float | None:
    """Build the version's onnxruntime-genai engine now, so its first chat request need not wait for it.

    A failure (onnxruntime-genai missing, an architecture its builder lacks, a failed build) is logged and
    reported as a warning, never raised: the version stays usable, built on first use or decoded by PyTorch.

    Returns:
        The seconds the build took, or None when it failed.
    """
    from tailor.models.genai import DEFAULT_PRECISION, EngineUnavailable, ensure_engine, release_engine
    from tailor.registry.service import open_registry

    started = time.monotonic()
    try:
        artifact = open_registry(settings).artifact_dir(version)
        release_engine(ensure_engine(artifact, settings.home / "cache" / "genai", DEFAULT_PRECISION))
    except Exception as exc:  # noqa: BLE001 - the model is registered; serving builds or falls back later
        log.warning("the serving engine of %s was not built: %s", version.ref, exc)
        # an event is shown to the tenant: say why only when the reason names no storage path
        why = str(exc) if isinstance(exc, EngineUnavailable) else "see the log"
        reporter.message(f"warning: the serving engine was not built ({why}); the first chat request builds it "
                         "or decodes with PyTorch")
        return None
    seconds = round(time.monotonic() - started, 1)
    reporter.message(f"serving engine ready ({seconds:.1f} s)", engine_s=seconds)
    return seconds


def chat_metrics(evaluation: dict, outcome) -> dict:
    """The version's metrics: test loss/perplexity of tuned and base, label metrics, best validation loss."""
    base, tuned = evaluation["loss"]["base"], evaluation["loss"]["tuned"]
    test = {"loss": tuned["loss"], "perplexity": tuned["perplexity"], "token_accuracy": tuned["token_accuracy"],
            "base_loss": base["loss"], "base_perplexity": base["perplexity"],
            "base_token_accuracy": base["token_accuracy"], "tokens": tuned["tokens"],
            "examples": evaluation["examples"]}
    if evaluation.get("labels"):
        test.update(exact_match=evaluation["labels"]["accuracy"], macro_f1=evaluation["labels"]["macro_f1"])
    return {"test": test, "valid_loss": outcome.best_valid_loss, "best_step": outcome.best_step,
            "samples": evaluation["samples"]}


def write_chat_artifacts(directory: Path, model, tokenizer, base_name: str, system_prompt: str | None, cfg,
                         metrics: dict, report: dict, evaluation: dict, outcome) -> None:
    """Write a chat version: adapter/, tokenizer/, tailor_model.json, configs, metrics, history and reports."""
    from tailor.data.chat import render_chat_report_html
    from tailor.eval.generation import render_chat_eval_html
    from tailor.models.causal import ChatSpec, save_chat_version

    spec = ChatSpec(base_model=base_name, max_length=cfg.max_length, system_prompt=system_prompt)
    save_chat_version(model, tokenizer, spec, directory)
    files = {"train_config.json": cfg.model_dump(), "metrics.json": metrics,
             "history.json": {"steps": outcome.history, "stop_reason": outcome.stop_reason,
                              "best_step": outcome.best_step, "total_steps": outcome.total_steps,
                              "tokens_per_s": outcome.tokens_per_s},
             "data_report.json": report}
    for filename, content in files.items():
        (directory / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    (directory / "data_report.html").write_text(render_chat_report_html(report), encoding="utf-8")
    (directory / "eval_report.html").write_text(render_chat_eval_html(evaluation), encoding="utf-8")
