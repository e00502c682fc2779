"""Chat fine-tuning data: read and validate JSONL conversations, tokenize them with the loss mask, report.

Two record formats are accepted, detected from the first record:

- ``chat`` (OpenAI's chat fine-tuning format): ``{"messages": [{"role": "system"|"user"|"assistant",
  "content": "..."}, ...]}``
- ``instruction``: ``{"instruction": "...", "input": "...", "output": "..."}``; the user message is the
  instruction, followed by a blank line and the input when the input is not empty; the assistant message is
  the output.

Every line is checked; the first problems (up to :data:`MAX_REPORTED_PROBLEMS`) are collected and the
:class:`~tailor.errors.DataError` names the first, with its line and field, and how many more there are.

Conversations longer than the token limit are not problems: :func:`fit_chat_lengths` truncates them (keeping
their start, as OpenAI's fine-tuning does) or drops those that would keep no assistant token, and reports
which lines; only strict checking refuses them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tailor.errors import DataError
from tailor.settings import get_settings

ROLES = ("system", "user", "assistant")
FORMATS = ("chat", "instruction")
MAX_REPORTED_PROBLEMS = 20
IGNORE_INDEX = -100  # label of tokens that carry no loss (PyTorch cross-entropy's ignore_index)
# The default chat preset's max_length (train/presets/chat/default.json; a test keeps them equal), used where
# no training config is at hand (the service's report of an uploaded file). See ChatConfig.max_length for why.
DEFAULT_CHAT_MAX_LENGTH = 1024


@dataclass(frozen=True)
class ChatExample:
    """One conversation and the 1-based line it came from."""

    messages: list[dict]
    line: int = 0


@dataclass(frozen=True)
class ChatSource:
    """Where a chat dataset came from: path, detected format (``chat``/``instruction``), sha256, lines read."""

    path: str
    format: str
    sha256: str
    rows_read: int


@dataclass
class ChatDataset:
    """Validated conversations (each has at least one assistant message) and their source."""

    examples: list[ChatExample]
    source: ChatSource | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, indices) -> "ChatDataset":
        return ChatDataset([self.examples[i] for i in indices], self.source)


@dataclass(frozen=True)
class Problem:
    """One invalid line: where, which field, what is wrong."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class _Problems:
    items: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, line: int, field_name: str | None, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED_PROBLEMS:
            self.items.append(Problem(line, field_name, message))

    def raise_if_any(self) -> None:
        if not self.total:
            return
        first = self.items[0]
        more = ""
        if self.total > 1:
            lines = ", ".join(str(p.line) for p in self.items[1:6])
            more = f" (and {self.total - 1} more problem{'s' if self.total > 2 else ''}, at lines {lines}" \
                   f"{', ...' if self.total > 6 else ''})"
        error = DataError(first.message + more, line=first.line, field=first.field)
        error.problems = list(self.items)
        error.total_problems = self.total
        raise error


# ----------------------------------------------------------------------------------------------- reading


def detect_format(record: dict) -> str | None:
    """``chat`` for a record with ``messages``, ``instruction`` for one with ``instruction`` and ``output``."""
    if "messages" in record:
        return "chat"
    if "instruction" in record and "output" in record:
        return "instruction"
    return None


def sniff_chat_format(path, max_bytes: int = 1 << 20) -> str | None:
    """Cheaply tell whether a file holds chat data: the format of its first JSON object, or None.

    Reads at most ``max_bytes`` (the first line); never raises for a file that is not chat data.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(max_bytes)
    except OSError:
        return None
    for raw in head.decode("utf-8-sig", errors="replace").splitlines():
        if raw.strip():
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                return None
            return detect_format(record) if isinstance(record, dict) else None
    return None


def _messages_from_instruction(record: dict, line: int, problems: _Problems) -> list[dict] | None:
    values = {}
    for key in ("instruction", "input", "output"):
        value = record.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            problems.add(line, key, f"{key!r} must be a string, found {type(value).__name__}")
            return None
        values[key] = value
    for key in ("instruction", "output"):
        if not values[key].strip():
            problems.add(line, key, f"{key!r} is empty")
            return None
    user = values["instruction"] + ("\n\n" + values["input"] if values["input"].strip() else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": values["output"]}]


def _messages_from_chat(record: dict, line: int, problems: _Problems) -> list[dict] | None:
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.add(line, "messages", "'messages' must be a non-empty list of {role, content} objects")
        return None
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.add(line, where, f"{where} must be an object with 'role' and 'content'")
            return None
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.add(line, f"{where}.role",
                         f"{where}.role is {role!r}; allowed roles are {', '.join(ROLES)}")
            return None
        if not isinstance(content, str):
            problems.add(line, f"{where}.content", f"{where}.content must be a string")
            return None
        if not content.strip():
            problems.add(line, f"{where}.content", f"{where}.content is empty")
            return None
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        problems.add(line, "messages", "no assistant message: nothing to learn from this conversation")
        return None
    return out


def _json_lines(stream) -> Iterator[tuple[int, str]]:
    for line, raw in enumerate(stream, start=1):
        if raw.strip():
            yield line, raw


def _parse_chat_lines(lines, problems: _Problems) -> tuple[str | None, list[ChatExample], int]:
    """Parse ``(line, raw)`` pairs into examples, recording problems. Returns ``(format, examples, rows)``."""
    fmt, examples, rows = None, [], 0
    for line, raw in lines:
        rows += 1
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.add(line, None, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            problems.add(line, None, f"expected a JSON object, found {type(record).__name__}")
            continue
        if fmt is None:
            fmt = detect_format(record)
            if fmt is None:
                problems.add(line, "messages", "missing 'messages' (chat format) or 'instruction' and 'output' "
                                               "(instruction format)")
                continue
        if fmt == "chat" and "messages" not in record:
            problems.add(line, "messages", "missing 'messages' (the file is in chat format)")
            continue
        build = _messages_from_chat if fmt == "chat" else _messages_from_instruction
        messages = build(record, line, problems)
        if messages is not None:
            examples.append(ChatExample(messages, line))
    return fmt, examples, rows


def read_chat_dataset(path, *, max_bytes: int | None = None) -> ChatDataset:
    """Read and validate a JSONL file of conversations (chat or instruction format).

    This is the cheap check the service runs on upload (no tokenizer); token lengths are fitted to a limit
    later, by :func:`fit_chat_lengths`.

    Args:
        path: the ``.jsonl`` file (UTF-8, optionally with a BOM).
        max_bytes: largest file accepted; defaults to ``TAILOR_MAX_FILE_MB``.

    Returns:
        A :class:`ChatDataset`.

    Raises:
        DataError: the file is missing, too large, binary or not UTF-8, empty, or has invalid lines; the
            message names the first bad line and field and counts the others (``.problems`` lists up to
            20 of them).
    """
    from tailor.data.ingest import open_checked_text

    path = Path(path)
    limit = get_settings().max_file_bytes if max_bytes is None else max_bytes
    problems = _Problems()
    with open_checked_text(path, limit) as (stream, _encoding, _head, meter):
        fmt, examples, rows = _parse_chat_lines(_json_lines(stream), problems)
        sha256 = meter.sha256.hexdigest()
    if rows == 0:
        raise DataError("file is empty")
    if fmt is None:
        raise DataError("no conversations found: expected JSON Lines with 'messages' (chat format) or "
                        f"'instruction' and 'output' (instruction format); {problems.items[0]}")
    problems.raise_if_any()
    return ChatDataset(examples, ChatSource(str(path), fmt, sha256, rows))


def validate_chat_file(path, max_bytes: int | None = None) -> dict:
    """The upload-time check: is ``path`` a chat/instruction JSONL file, and is every line valid?

    Needs no tokenizer and no torch.

    Returns:
        ``{"format": "chat"|"instruction", "examples": n, "sha256": ...}``.

    Raises:
        DataError: as :func:`read_chat_dataset` (the first problem, its line and field, and a count).
    """
    dataset = read_chat_dataset(path, max_bytes=max_bytes)
    return {"format": dataset.source.format, "examples": len(dataset), "sha256": dataset.source.sha256}


# ----------------------------------------------------------------------------------------------- tokenizing


@dataclass(frozen=True)
class EncodedChat:
    """Token ids per conversation and the labels (the ids on assistant tokens, ``IGNORE_INDEX`` elsewhere)."""

    input_ids: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.input_ids)

    def trained_tokens(self) -> int:
        return sum(sum(1 for t in row if t != IGNORE_INDEX) for row in self.labels)


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation rendered with the chat template, and the character span of each assistant reply.

    Each span is found by rendering the conversation up to the reply with the assistant's turn opened
    (its start) and up to and including the reply (its end, less trailing whitespace after the end-of-turn
    token), so it covers the reply's content and the end-of-turn marker the template puts after it.

    Raises:
        DataError: the template renders a prefix of the conversation differently from the whole (the
            spans cannot be located).
    """
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        through = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False).rstrip()
        if not (full.startswith(before) and full.startswith(through) and len(through) > len(before)):
            raise DataError("the chat template renders conversation prefixes inconsistently; cannot tell which "
                            "tokens are the assistant's")
        spans.append((len(before), len(through)))
    return full, spans


def encode_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one conversation; labels are -100 except on assistant replies.

    A token is trained on when it starts inside an assistant span (see :func:`assistant_spans`).
    """
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for k, (start, end) in enumerate(encoded["offset_mapping"]):
        if end > start and any(a <= start < b for a, b in spans):
            labels[k] = ids[k]
    return ids, labels


def encode_chat(tokenizer, examples: list[ChatExample], max_length: int | None = None) -> EncodedChat:
    """Tokenize conversations with their loss masks, cut to ``max_length`` tokens when given."""
    ids, labels = [], []
    for example in examples:
        row_ids, row_labels = encode_conversation(tokenizer, example.messages)
        if max_length:
            row_ids, row_labels = row_ids[:max_length], row_labels[:max_length]
        ids.append(row_ids)
        labels.append(row_labels)
    return EncodedChat(ids, labels)


def token_limit(max_length: int, context: int | None) -> int:
    """The most tokens a conversation may have: the ``max_length`` setting, capped by the model's context
    (its maximum positions; None when unknown)."""
    return min(max_length, context) if context else max_length


@dataclass(frozen=True)
class LengthFit:
    """What the token limit did to a dataset.

    Attributes:
        max_length: the limit, in tokens.
        truncated: lines of the conversations cut to the limit (their start kept, assistant tokens left).
        dropped: lines of the conversations left out: no assistant token would be left to learn from.
    """

    max_length: int
    truncated: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        """``{"max_length", "truncated": {"count", "lines"}, "dropped": {"count", "lines"}}``; ``lines`` lists
        the first :data:`MAX_REPORTED_PROBLEMS`."""
        return {"max_length": self.max_length,
                "truncated": {"count": len(self.truncated), "lines": self.truncated[:MAX_REPORTED_PROBLEMS]},
                "dropped": {"count": len(self.dropped), "lines": self.dropped[:MAX_REPORTED_PROBLEMS]}}

    def describe(self) -> str | None:
        """One line for the job's events and the report, None when every conversation fits (see
        :func:`describe_over_limit`)."""
        return describe_over_limit(self.summary())


def describe_over_limit(summary: dict | None) -> str | None:
    """A :meth:`LengthFit.summary` in words, e.g. ``3 conversations over the 512-token limit: 2 truncated
    (lines 11, 40), 1 dropped, no assistant token within the limit (line 7)``; None when nothing was cut."""
    if not summary or not (summary["truncated"]["count"] or summary["dropped"]["count"]):
        return None

    def lines(part: dict) -> str:
        more = ", ..." if part["count"] > len(part["lines"]) else ""
        return f"line{'s' if part['count'] > 1 else ''} {', '.join(map(str, part['lines']))}{more}"

    truncated, dropped = summary["truncated"], summary["dropped"]
    n = truncated["count"] + dropped["count"]
    parts = []
    if truncated["count"]:
        parts.append(f"{truncated['count']} truncated ({lines(truncated)})")
    if dropped["count"]:
        parts.append(f"{dropped['count']} dropped, no assistant token within the limit ({lines(dropped)})")
    return f"{n} conversation{'s' if n > 1 else ''} over the {summary['max_length']:,}-token limit: " + ", ".join(parts)


def fit_chat_lengths(dataset: ChatDataset, tokenizer, max_length: int, *,
                     strict: bool = False) -> tuple[ChatDataset, EncodedChat, LengthFit]:
    """Tokenize ``dataset`` and make every conversation fit ``max_length`` tokens, as OpenAI's fine-tuning does.

    A longer conversation keeps its start up to the limit, so the loss still covers the assistant tokens that
    fit (``truncated``); one that would keep no assistant token to learn from (none after the first position,
    which nothing predicts) is left out (``dropped``).

    Args:
        dataset: validated conversations.
        tokenizer: the model's tokenizer, with its chat template.
        max_length: the limit (see :func:`token_limit`).
        strict: refuse over-long conversations instead.

    Returns:
        ``(kept, encoded, fit)``: the conversations kept (in order, with their lines), their token ids and labels
        cut to the limit, and the :class:`LengthFit` that names the lines truncated and dropped.

    Raises:
        DataError: with ``strict``, ``line 11: 514 tokens, 2 over the 512-token limit`` for the first over-long
            conversation (and a count of the others); without it, when no conversation is left.
    """
    problems = _Problems()
    kept, ids, labels, truncated, dropped = [], [], [], [], []
    for example in dataset.examples:
        row_ids, row_labels = encode_conversation(tokenizer, example.messages)
        n = len(row_ids)
        if n > max_length:
            if strict:
                problems.add(example.line, "messages",
                             f"{n:,} tokens, {n - max_length:,} over the {max_length:,}-token limit")
                continue
            row_ids, row_labels = row_ids[:max_length], row_labels[:max_length]
            if all(t == IGNORE_INDEX for t in row_labels[1:]):
                dropped.append(example.line)
                continue
            truncated.append(example.line)
        kept.append(example)
        ids.append(row_ids)
        labels.append(row_labels)
    problems.raise_if_any()
    fit = LengthFit(max_length, truncated, dropped)
    if not kept:
        raise DataError(f"no conversation keeps an assistant token within the {max_length:,}-token limit "
                        f"({fit.describe()}); raise max_length")
    return ChatDataset(kept, dataset.source), EncodedChat(ids, labels), fit


# ----------------------------------------------------------------------------------------------- report


def _stats(values: list[int]) -> dict | None:
    if not values:
        return None
    ordered = sorted(values)

    def pct(q: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"min": ordered[0], "p50": pct(0.5), "p95": pct(0.95), "max": ordered[-1],
            "mean": round(sum(ordered) / len(ordered), 1), "total": sum(ordered)}


def _fingerprint(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def build_chat_report(dataset: ChatDataset, encoded: EncodedChat, *, max_length: int, epochs: int = 1,
                      tokens_per_s: float | None = None, tokens_per_s_source: str = "",
                      eval_ds: ChatDataset | None = None, length_fit: LengthFit | None = None) -> dict:
    """The data report of a chat dataset.

    Args:
        dataset / encoded: the conversations and their tokenization (:func:`encode_chat`, or the kept
            conversations of :func:`fit_chat_lengths`).
        epochs: used for the training-time estimate.
        tokens_per_s: measured training throughput (tokens per second, forward + backward) on this machine;
            without it there is no estimate.
        tokens_per_s_source: how it was measured, shown beside the estimate.
        eval_ds: the eval file, to count conversations that appear in both.
        length_fit: what the token limit truncated and dropped (``over_limit``).

    Returns:
        ``{"source", "examples", "format", "turns", "tokens": {min,p50,p95,max,mean,total},
        "assistant_tokens": {...}, "duplicates", "leaked_into_eval", "max_length", "over_limit", "estimate",
        "warnings", "samples"}``; ``over_limit`` is :meth:`LengthFit.summary` (None without ``length_fit``).
    """
    lengths = [len(r) for r in encoded.input_ids]
    trained = [sum(1 for t in row if t != IGNORE_INDEX) for row in encoded.labels]
    prints = [_fingerprint(e.messages) for e in dataset.examples]
    duplicates = len(prints) - len(set(prints))
    leaked = None
    if eval_ds is not None:
        eval_prints = {_fingerprint(e.messages) for e in eval_ds.examples}
        leaked = sum(1 for p in prints if p in eval_prints)
    estimate = None
    if tokens_per_s:
        total = sum(lengths) * epochs
        estimate = {"tokens_per_s": round(tokens_per_s, 1), "epochs": epochs,
                    "seconds": round(total / tokens_per_s, 1), "source": tokens_per_s_source}
    report = {
        "source": dict(dataset.source.__dict__) if dataset.source else None,
        "eval_source": dict(eval_ds.source.__dict__) if eval_ds is not None and eval_ds.source else None,
        "examples": len(dataset),
        "turns": _stats([len(e.messages) for e in dataset.examples]),
        "tokens": _stats(lengths),
        "assistant_tokens": _stats(trained),
        "duplicates": duplicates,
        "leaked_into_eval": leaked,
        "max_length": max_length,
        "over_limit": length_fit.summary() if length_fit is not None else None,
        "estimate": estimate,
        "samples": [e.messages for e in dataset.examples[:3]],
    }
    report["warnings"] = _chat_warnings(report)
    return report


def _chat_warnings(report: dict) -> list[str]:
    warnings = []
    if report["examples"] < 20:
        warnings.append(f"only {report['examples']} conversations: expect little change from the base model")
    if report["duplicates"]:
        warnings.append(f"{report['duplicates']} duplicate conversations (they are trained on more than once)")
    if report["leaked_into_eval"]:
        warnings.append(f"{report['leaked_into_eval']} training conversations also appear in the eval file")
    return warnings


def format_chat_report_text(report: dict) -> str:
    """The chat data report for the terminal."""
    tok, ast = report["tokens"] or {}, report["assistant_tokens"] or {}
    lines = [f"conversations: {report['examples']} ({(report['source'] or {}).get('format', '?')} format), "
             f"duplicates {report['duplicates']}",
             f"tokens per conversation: min {tok.get('min')}  p50 {tok.get('p50')}  p95 {tok.get('p95')}  "
             f"max {tok.get('max')}  (limit {report['max_length']}); total {tok.get('total')}",
             f"assistant tokens (trained on): total {ast.get('total')}, p50 {ast.get('p50')} per conversation"]
    if describe_over_limit(report.get("over_limit")):
        lines.append(describe_over_limit(report["over_limit"]))
    if report["estimate"]:
        est = report["estimate"]
        lines.append(f"estimated training time: {est['seconds']:.0f}s for {est['epochs']} epoch(s) at "
                     f"{est['tokens_per_s']:.0f} tokens/s ({est['source']})")
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return "\n".join(lines)


def render_chat_report_html(report: dict) -> str:
    """The chat data report as a self-contained HTML page."""
    from tailor.html import page, paragraph, section, table

    def row(name: str, stats: dict | None) -> list:
        stats = stats or {}
        return [name] + [stats.get(k, "") for k in ("min", "p50", "p95", "max", "total")]

    summary = table(["", "value"], [["conversations", report["examples"]], ["duplicates", report["duplicates"]],
                                    ["in the eval file too", report["leaked_into_eval"] if report["leaked_into_eval"]
                                     is not None else "-"], ["token limit", report["max_length"]]])
    lengths = table(["tokens", "min", "p50", "p95", "max", "total"],
                    [row("per conversation", report["tokens"]), row("assistant (trained on)", report["assistant_tokens"]),
                     row("messages per conversation", report["turns"])])
    parts = [section("Summary", summary), section("Lengths", lengths)]
    if describe_over_limit(report.get("over_limit")):
        parts.append(section("Over the token limit", paragraph(describe_over_limit(report["over_limit"]), "warn")))
    if report["estimate"]:
        est = report["estimate"]
        parts.append(section("Estimated training time", paragraph(
            f"{est['seconds']:.0f} s for {est['epochs']} epoch(s) at {est['tokens_per_s']:.0f} tokens/s "
            f"({est['source']})")))
    if report["warnings"]:
        parts.append(section("Warnings", *(paragraph(w, "warn") for w in report["warnings"])))
    samples = [[i + 1, m["role"], m["content"][:300]] for i, msgs in enumerate(report["samples"]) for m in msgs]
    parts.append(section("First conversations", table(["#", "role", "content"], samples)))
    subtitle = (report["source"] or {}).get("path", "")
    return page("Chat data report", parts, subtitle=subtitle)


# Training throughput of SmolLM2-135M-Instruct with LoRA (r=16, q/k/v/o), bf16 autocast, measured by the
# training loop on the 2-core development machine (AMD EPYC with AVX-512 bf16) over two epochs of 300 MedQuAD
# conversations; a job measures its own machine instead (see tailor.train.sft.measure_tokens_per_s).
SMOLLM2_CPU_TOKENS_PER_S = 390.0


def chat_report_for_file(path, *, base: str = "smollm2-135m-instruct", max_length: int | None = None,
                         epochs: int = 2, display_name: str | None = None, max_bytes: int | None = None) -> dict:
    """The data report of a chat file as the service shows it, counted with ``base``'s tokenizer.

    Conversations longer than the token limit are reported as training will treat them (``over_limit``: the
    lines truncated and dropped, see :func:`fit_chat_lengths`), not refused, and ``base_model`` names the
    tokenizer used. The training-time estimate uses :data:`SMOLLM2_CPU_TOKENS_PER_S` (a constant measured on
    the development machine), since no model is loaded here.

    Args:
        max_length: the limit; default :data:`DEFAULT_CHAT_MAX_LENGTH` (the default chat preset's), capped
            by the base model's context as training caps it.
        display_name: the name shown as the source path (default: the file's name, never its directory).

    Raises:
        DataError: as :func:`read_chat_dataset`, or no conversation keeps an assistant token within the limit.
    """
    from tailor.catalog import resolve_base
    from tailor.models.causal import context_length, load_chat_tokenizer

    dataset = read_chat_dataset(path, max_bytes=max_bytes)
    base_path = resolve_base(base).path
    tokenizer = load_chat_tokenizer(base_path)
    limit = token_limit(max_length or DEFAULT_CHAT_MAX_LENGTH, context_length(base_path))
    kept, encoded, fit = fit_chat_lengths(dataset, tokenizer, limit)
    source = "constant: SmolLM2-135M LoRA training throughput measured on the 2-core development machine"
    report = build_chat_report(kept, encoded, max_length=limit, epochs=epochs, tokens_per_s=SMOLLM2_CPU_TOKENS_PER_S,
                               tokens_per_s_source=source, length_fit=fit)
    report["source"]["path"] = display_name or Path(path).name
    report["base_model"] = base
    return report
