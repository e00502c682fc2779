"""Evaluating a fine-tuned chat model against its base on held-out conversations.

The base is the same PEFT model with its adapter switched off (``disable_adapter()``), so nothing is loaded
twice. The evaluation has the validation loss and perplexity over assistant tokens of both, side by side;
a few greedy sample answers of both; and, when every reference answer is a short label (a classification
task phrased as chat), exact-match accuracy and macro-F1 of the fine-tuned model's answers.
"""

from __future__ import annotations

import contextlib

from tailor.data.chat import ChatExample, EncodedChat

LABEL_MAX_WORDS = 5
LABEL_MAX_VALUES = 20
LABEL_MAX_TOKENS = 16


def _base_of(model):
    """A context in which ``model`` behaves as its base (the adapter off); a no-op for a plain model."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


def compare_losses(model, encoded: EncodedChat, pad_id: int, device: str, bf16: bool = False,
                   batch_size: int = 8) -> dict:
    """Assistant-token loss, perplexity and token accuracy of the base and the fine-tuned model.

    Returns:
        ``{"base": {...}, "tuned": {...}, "loss_change": tuned - base}`` (see :func:`assistant_loss`).
    """
    from tailor.train.sft import assistant_loss

    tuned = assistant_loss(model, encoded, pad_id, device, bf16, batch_size)
    with _base_of(model):
        base = assistant_loss(model, encoded, pad_id, device, bf16, batch_size)
    return {"base": base, "tuned": tuned, "loss_change": round(tuned["loss"] - base["loss"], 5)}


def prompt_and_reference(example: ChatExample) -> tuple[list[dict], str]:
    """The conversation up to its last assistant reply (the prompt) and that reply (the reference)."""
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    return example.messages[:last], example.messages[last]["content"]


def sample_generations(chat, examples: list[ChatExample], n: int = 3, max_tokens: int = 64) -> list[dict]:
    """Greedy answers of the base and the fine-tuned model to the first ``n`` held-out prompts.

    Args:
        chat: a :class:`tailor.models.causal.ChatModel` over a PEFT model.

    Returns:
        ``[{"prompt", "reference", "base", "tuned"}]`` (``prompt`` is the last user message).
    """
    samples = []
    for example in examples[:n]:
        prompt, reference = prompt_and_reference(example)
        tuned = chat.generate(prompt, max_tokens=max_tokens).text
        with _base_of(chat.model):
            base = chat.generate(prompt, max_tokens=max_tokens).text
        samples.append({"prompt": prompt[-1]["content"], "reference": reference, "base": base, "tuned": tuned})
    return samples


def looks_like_labels(references: list[str]) -> bool:
    """True when every reference is at most 5 words and there are at most 20 distinct ones."""
    stripped = [r.strip() for r in references]
    return bool(stripped) and all(len(r.split()) <= LABEL_MAX_WORDS for r in stripped) \
        and len(set(stripped)) <= LABEL_MAX_VALUES


def label_metrics(chat, examples: list[ChatExample]) -> dict | None:
    """Exact-match accuracy and macro-F1 of greedy answers when the references are short labels, else None.

    Answers are compared after stripping surrounding whitespace; an answer that is none of the labels
    counts as wrong (it is its own class in the confusion matrix).
    """
    from tailor.eval.metrics import classification_metrics

    pairs = [prompt_and_reference(e) for e in examples]
    references = [r.strip() for _, r in pairs]
    if not looks_like_labels(references):
        return None
    predictions = [chat.generate(p, max_tokens=LABEL_MAX_TOKENS).text.strip() for p, _ in pairs]
    labels = sorted(set(references) | set(predictions))
    metrics = classification_metrics(references, predictions, labels)
    return {k: metrics[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class")}


def evaluate_chat(chat, examples: list[ChatExample], encoded: EncodedChat, *, bf16: bool = False,
                  samples: int = 3, sample_max_tokens: int = 64, batch_size: int = 8) -> dict:
    """The full comparison of a fine-tuned chat model with its base on held-out conversations.

    Returns:
        ``{"examples", "loss": {"base", "tuned", "loss_change"}, "samples": [...], "labels": {...}|None}``.
    """
    pad_id = chat.tokenizer.pad_token_id
    losses = compare_losses(chat.model, encoded, pad_id, chat.device, bf16, batch_size)
    return {"examples": len(examples), "loss": losses,
            "samples": sample_generations(chat, examples, samples, sample_max_tokens),
            "labels": label_metrics(chat, examples)}


def format_chat_eval_text(evaluation: dict) -> str:
    """Base vs fine-tuned, for the terminal."""
    base, tuned = evaluation["loss"]["base"], evaluation["loss"]["tuned"]
    lines = [f"held-out conversations: {evaluation['examples']} ({tuned['tokens']} assistant tokens)",
             f"{'':<12}{'loss':>9}{'perplexity':>12}{'token acc':>11}",
             f"{'base':<12}{base['loss']:>9.4f}{base['perplexity']:>12.3f}{base['token_accuracy']:>11.4f}",
             f"{'fine-tuned':<12}{tuned['loss']:>9.4f}{tuned['perplexity']:>12.3f}{tuned['token_accuracy']:>11.4f}"]
    if evaluation.get("labels"):
        labels = evaluation["labels"]
        lines.append(f"short-label answers: exact match {labels['accuracy']:.4f}, macro-F1 {labels['macro_f1']:.4f}")
    for s in evaluation.get("samples", []):
        lines.append(f"\nQ: {s['prompt'][:200]}\n  base:  {s['base'][:200]}\n  tuned: {s['tuned'][:200]}")
    return "\n".join(lines)


def render_chat_eval_html(evaluation: dict, title: str = "Chat evaluation") -> str:
    """Base vs fine-tuned loss table, label metrics and sample answers as a self-contained HTML page."""
    from tailor.html import page, paragraph, section, table

    base, tuned = evaluation["loss"]["base"], evaluation["loss"]["tuned"]
    rows = [[name, m["loss"], m["perplexity"], m["token_accuracy"], m["tokens"]]
            for name, m in (("base", base), ("fine-tuned", tuned))]
    parts = [section("Held-out loss (assistant tokens)",
                     table(["model", "loss", "perplexity", "token accuracy", "tokens"], rows),
                     paragraph(f"{evaluation['examples']} held-out conversations; loss change "
                               f"{evaluation['loss']['loss_change']:+.4f}"))]
    if evaluation.get("labels"):
        labels = evaluation["labels"]
        parts.append(section("Short-label answers", table(
            ["n", "exact match", "macro-F1", "weighted-F1"],
            [[labels["n"], labels["accuracy"], labels["macro_f1"], labels["weighted_f1"]]])))
    if evaluation.get("samples"):
        parts.append(section("Sample answers (greedy)", table(
            ["prompt", "reference", "base", "fine-tuned"],
            [[s["prompt"][:400], s["reference"][:400], s["base"][:400], s["tuned"][:400]]
             for s in evaluation["samples"]])))
    return page(title, parts, subtitle=evaluation.get("model", ""))
