"""Global explanations of an evaluation: the words most associated with each label, the most confident
mistakes with their explanations, and how faithful the explanations are (see :mod:`tailor.eval.faithfulness`).

Everything comes from two scoring calls of the model being evaluated: one for the occlusion variants of the
explained rows (every label's weights at once, :mod:`tailor.models.explain`), one for the faithfulness check.
At most ``max_rows`` test rows are explained (a seeded sample when there are more), so the added time stays
bounded: a row of ``n`` words costs ``n + 1 + k + draws`` forward rows.
"""

from __future__ import annotations

import random
from collections import defaultdict
from html import escape
from typing import Callable, Sequence

import numpy as np

from tailor import html
from tailor.eval.faithfulness import DEFAULT_DRAWS, DEFAULT_K, comprehensiveness
from tailor.models.explain import MAX_UNITS, OcclusionPlan

MAX_ROWS = 32  # explained rows: ~20 forward rows each, about 0.1 s per row on one core (MiniLM, torch)
TOP_WORDS = 10
MIN_COUNT = 2
MISTAKES = 5


def explain_evaluation(predict_proba: Callable[[list[str]], np.ndarray], labels: Sequence[str], rows, proba,
                       *, max_rows: int = MAX_ROWS, top_words: int = TOP_WORDS, min_count: int = MIN_COUNT,
                       mistakes: int = MISTAKES, k: int = DEFAULT_K, draws: int = DEFAULT_DRAWS,
                       seed: int = 0, max_units: int = MAX_UNITS) -> dict:
    """The evaluation's global explanations (the ``explanations`` entry of a version's metrics).

    Args:
        predict_proba: texts -> probabilities ``(n, len(labels))`` of the evaluated model.
        labels: its labels in column order.
        rows: the scored rows (a ``TextDataset``: ``texts``, ``labels``, ``lines``).
        proba: ``predict_proba(rows.texts)``, already computed for the metrics.
        max_rows: rows explained for the top words and faithfulness at most (a sample seeded by ``seed``).
        top_words: words listed per label.
        min_count: a word must occur this many times in the explained rows to be listed.
        mistakes: the most confident mistakes explained.
        k / draws: see :func:`tailor.eval.faithfulness.comprehensiveness`.

    Returns:
        ``{"method": "occlusion", "unit": "word", "faithfulness": {"k", "texts", "comprehensiveness", "random",
        "ratio"}, "top_words": {label: [{"word", "weight", "count"}]}, "mistakes": [{"line", "text", "label",
        "predicted", "confidence", "explanation"}]}``. A word's ``weight`` for a label is the mean, over its
        occurrences in the explained rows, of the drop of that label's probability when it is removed; only
        words that raise the label (positive weight) are listed, strongest first.
    """
    n = len(rows.texts)
    sample = sorted(random.Random(seed).sample(range(n), max_rows)) if n > max_rows else list(range(n))
    best = np.asarray(proba).argmax(1)
    wrong = [i for i in range(n) if labels[best[i]] != rows.labels[i]]
    wrong = sorted(wrong, key=lambda i: -float(proba[i, best[i]]))[:mistakes]
    explained = sorted(set(sample) | set(wrong))
    plan = OcclusionPlan([rows.texts[i] for i in explained], max_units)
    found = dict(zip(explained, plan.explain(labels, predict_proba(plan.texts), all_labels=True)))
    faithfulness = comprehensiveness(predict_proba, labels, [rows.texts[i] for i in sample],
                                     [found[i] for i in sample], k=k, draws=draws, seed=seed)
    return {"method": "occlusion", "unit": "word", "faithfulness": faithfulness,
            "top_words": label_words([found[i] for i in sample], labels, top_words, min_count),
            "mistakes": [{"line": rows.lines[i], "text": rows.texts[i], "label": rows.labels[i],
                          "predicted": found[i].label, "confidence": round(float(found[i].probs.max()), 4),
                          "explanation": found[i].tokens} for i in wrong]}


def label_words(explanations, labels: Sequence[str], top: int = TOP_WORDS, min_count: int = MIN_COUNT
                ) -> dict[str, list[dict]]:
    """For each label, the ``top`` words (case-folded) whose removal lowers its probability most on average,
    among words seen at least ``min_count`` times and with a positive mean weight.

    Args:
        explanations: :class:`~tailor.models.explain.Explanation` objects with ``by_label``.
    """
    out = {}
    for label in labels:
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for explanation in explanations:
            for token in explanation.by_label[label]:
                word = token["token"].casefold()
                sums[word] += token["weight"]
                counts[word] += 1
        means = {w: sums[w] / counts[w] for w in sums if counts[w] >= min_count and sums[w] > 0}
        ranked = sorted(means, key=lambda w: (-means[w], w))[:top]
        out[label] = [{"word": w, "weight": round(means[w], 4), "count": counts[w]} for w in ranked]
    return out


def describe_faithfulness(faithfulness: dict) -> str:
    """One line: ``removing the 3 most important words lowers the predicted label's probability by 0.312 on
    average, 8.4x the 0.037 of 3 random words (40 texts)``."""
    f = faithfulness
    if not f["texts"]:
        return f"faithfulness not measured: no explained text has more than {f['k']} words"
    return (f"removing the {f['k']} most important words lowers the predicted label's probability by "
            f"{f['comprehensiveness']:.3f} on average, {f['ratio']:.1f}x the {f['random']:.3f} of {f['k']} random "
            f"words ({f['texts']} texts)")


def highlighted(text: str, tokens: Sequence[dict]) -> str:
    """``text`` as HTML with each explained token in a ``<mark>`` coloured by its weight (green raises the
    label, red lowers it; stronger is deeper) and the weight in its ``title``."""
    scale = max([abs(t["weight"]) for t in tokens] + [1e-9])
    parts, at = [], 0
    for t in sorted(tokens, key=lambda t: t["start"]):
        alpha = round(0.15 + 0.6 * abs(t["weight"]) / scale, 2)
        colour = f"rgba(26,127,55,{alpha})" if t["weight"] >= 0 else f"rgba(207,34,46,{alpha})"
        parts += [escape(text[at:t["start"]]),
                  f'<mark style="background:{colour}" title="{t["weight"]:+.4f}">{escape(text[t["start"]:t["end"]])}'
                  "</mark>"]
        at = t["end"]
    parts.append(escape(text[at:]))
    return "".join(parts)


def explanations_section(explanations: dict) -> str:
    """The evaluation report's "Explanations" section: faithfulness, words per label, explained mistakes."""
    words = html.table(["label", "words most associated with it (mean weight, count)"],
                       [(label, ", ".join(f"{w['word']} ({w['weight']:+.3f}, {w['count']})" for w in listed) or "—")
                        for label, listed in explanations["top_words"].items()])
    mistakes = "".join(
        f'<p><span class="muted">line {m["line"]}: {escape(m["label"])} predicted as {escape(m["predicted"])} '
        f'({m["confidence"]:.1%})</span><br>{highlighted(m["text"], m["explanation"])}</p>'
        for m in explanations["mistakes"]) or html.paragraph("No row was misclassified.", "ok")
    return html.section(
        "Explanations",
        html.paragraph("Word-level occlusion: a word's weight is how much the label's probability drops when "
                       "the word is removed (tailor predict --explain, \"explain\": true in the API).", "muted"),
        html.paragraph("Faithfulness: " + describe_faithfulness(explanations["faithfulness"]) + "."),
        html.paragraph("Words most associated with each label (explained test rows):"), words,
        html.paragraph("The most confident mistakes, words coloured by how much they raised (green) or lowered "
                       "(red) the wrong label; hover for the weight:"), mistakes)
