"""The data report: what was read, what cleaning removed, and what may still hurt training.

:func:`build_data_report` makes a JSON-serialisable dict; :func:`render_data_report_html` and
:func:`format_data_report_text` show it as a self-contained page and as a short terminal summary.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from tailor.data.clean import EXAMPLE_CHARS, CleanResult
from tailor.data.dataset import TextDataset
from tailor.data.label_issues import MIN_CONFIDENCE, search_label_issues
from tailor.data.pii import KIND_NAMES, KINDS, count_pii
from tailor.data.validate import MIN_LEARN_ROWS, small_classes
from tailor.html import bar_chart, page, paragraph, section, table

TOKENIZER_BATCH = 1000
MAX_ISSUE_EXAMPLES = 50
IMBALANCE_WARNING = 10.0  # largest class / smallest class
ISSUE_SHARE_WARNING = 0.02  # likely label errors / kept rows
REMOVED_SHARE_WARNING = 0.10  # removed rows / rows read
_STATS = ("mean", "p50", "p90", "p95", "p99", "max")


def build_data_report(raw: TextDataset, cleaned: CleanResult, *, eval_ds: TextDataset | None = None,
                      tokenizer=None, max_length: int = 128, find_issues: bool = True, seed: int = 0) -> dict:
    """Describe a dataset and its cleaning.

    Args:
        raw: the rows as read.
        cleaned: ``clean_dataset(raw, ..., eval_ds=eval_ds)``; its leak counts fill ``leakage``.
        eval_ds: the evaluation rows, if any.
        tokenizer: a Hugging Face tokenizer for token lengths; None leaves ``lengths.tokens`` null.
        max_length: the model's truncation length, for ``over_max_length``.
        find_issues: search for likely label errors (a few seconds on 10,000 rows); False leaves
            ``label_issues`` null.
        seed: fixes the label-error search.

    Returns:
        A dict with the keys ``source``, ``rows``, ``labels``, ``small_classes``, ``lengths``,
        ``label_issues``, ``pii`` (found in the kept rows), ``redacted`` (the personal data replaced by
        placeholders when cleaning redacted it, per kind and ``rows_redacted``; else None), ``leakage`` and
        ``warnings`` (see the module's tests for their shape).
    """
    kept = cleaned.dataset
    counts = dict(sorted(kept.label_counts().items(), key=lambda item: (-item[1], item[0])))
    report = {
        "source": {**(asdict(raw.source) if raw.source else {}),
                   "eval_source": asdict(eval_ds.source) if eval_ds is not None and eval_ds.source else None},
        "rows": {"read": len(raw), "kept": len(kept), "removed": dict(cleaned.removed),
                 "examples": cleaned.examples},
        "labels": _label_summary(counts),
        "small_classes": small_classes(counts),
        "lengths": {"chars": length_stats([len(t) for t in kept.texts]),
                    "tokens": _token_lengths(kept.texts, tokenizer, max_length) if tokenizer is not None else None},
        "label_issues": _label_issues(kept, seed) if find_issues else None,
        "pii": count_pii(kept.texts),
        "redacted": cleaned.redacted,
        "leakage": None if eval_ds is None else {
            "eval_rows": len(eval_ds),
            "leaked_rows": cleaned.removed["leaked_into_eval"],
            "examples": cleaned.examples["leaked_into_eval"],
        },
    }
    report["warnings"] = _warnings(report)
    return report


def length_stats(lengths: list[int]) -> dict:
    """Mean, 50th/90th/95th/99th percentiles (one decimal) and maximum; all None for no rows."""
    if not lengths:
        return dict.fromkeys(_STATS)
    values = np.asarray(lengths)
    p50, p90, p95, p99 = (round(float(p), 1) for p in np.percentile(values, [50, 90, 95, 99]))
    return {"mean": round(float(values.mean()), 1), "p50": p50, "p90": p90, "p95": p95, "p99": p99,
            "max": int(values.max())}


def length_histogram(lengths: list[int], bins: int = 12) -> dict:
    """Rows per length range: ``{"edges": [e0, ..., en], "counts": [c1, ..., cn]}`` with whole-number edges,
    each bin ``[e(i-1), e(i))`` and the last one closed; empty lists for no rows."""
    if not lengths:
        return {"edges": [], "counts": []}
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // bins))
    edges = list(range(low, high + width + 1, width))
    if edges[-1] <= high:
        edges.append(edges[-1] + width)
    counts, _ = np.histogram(lengths, bins=edges)
    return {"edges": [int(e) for e in edges], "counts": [int(c) for c in counts]}


def _label_summary(counts: dict[str, int]) -> dict:
    """Counts (largest first), class count, imbalance ratio and the majority class."""
    if not counts:
        return {"counts": {}, "n_classes": 0, "imbalance_ratio": None, "majority_label": None,
                "majority_share": None}
    majority, largest = next(iter(counts.items()))
    return {
        "counts": counts,
        "n_classes": len(counts),
        "imbalance_ratio": round(largest / min(counts.values()), 2),
        "majority_label": majority,
        "majority_share": round(largest / sum(counts.values()), 4),
    }


def _token_lengths(texts: list[str], tokenizer, max_length: int) -> dict:
    """Token-length statistics with special tokens and without truncation, tokenized in batches."""
    lengths = []
    for start in range(0, len(texts), TOKENIZER_BATCH):
        encoded = tokenizer(texts[start:start + TOKENIZER_BATCH], add_special_tokens=True, truncation=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return {**length_stats(lengths), "over_max_length": sum(n > max_length for n in lengths),
            "max_length": max_length}


def _label_issues(kept: TextDataset, seed: int) -> dict:
    """The likely label errors (see :mod:`tailor.data.label_issues`) and the judging model's agreement.

    Returns:
        ``{"count", "min_confidence", "model": {"rows", "agreement", "kappa", "reliable"}, "examples"}``;
        ``model.agreement`` and ``model.kappa`` are None when the search could not run.
    """
    search = search_label_issues(kept.texts, kept.labels, seed=seed, max_issues=None)
    return {
        "count": len(search.issues),
        "min_confidence": MIN_CONFIDENCE,
        "model": {"rows": search.rows_scored,
                  "agreement": None if search.agreement is None else round(search.agreement, 4),
                  "kappa": None if search.kappa is None else round(search.kappa, 4),
                  "reliable": search.reliable},
        "examples": [
            {"line": kept.lines[issue.index], "text": kept.texts[issue.index][:EXAMPLE_CHARS], "label": issue.label,
             "suggested": issue.suggested, "confidence": round(issue.confidence, 4)}
            for issue in search.issues[:MAX_ISSUE_EXAMPLES]
        ],
    }


def _issues_meaning(issues: dict) -> str:
    """What the count means, in one sentence fragment."""
    return (f"whose label a model trained on the other rows confidently disagrees with (it gives another label "
            f"at least {issues['min_confidence']:.0%} probability)")


def _weak_model_note(issues: dict) -> str:
    model = issues["model"]
    return (f"the model trained on the other rows agrees with only {model['agreement']:.1%} of the labels "
            f"(kappa {model['kappa']:.2f}), too weak to tell a wrong label from a hard row, so these are worth a "
            "glance, not a warning")


def _warnings(report: dict) -> list[str]:
    """Plain sentences about what may hurt training, most basic first."""
    warnings = []
    rows, labels = report["rows"], report["labels"]
    removed = sum(rows["removed"].values())
    if removed > REMOVED_SHARE_WARNING * rows["read"]:
        warnings.append(f"Cleaning removed {removed} of {_counted(rows['read'], 'row')} "
                        f"({_percent(removed, rows['read'])}); see the reasons under rows removed.")
    if labels["imbalance_ratio"] is not None and labels["imbalance_ratio"] >= IMBALANCE_WARNING:
        warnings.append(f"The classes are imbalanced: the largest has {labels['imbalance_ratio']} times "
                        "the rows of the smallest.")
    if report["small_classes"]:
        names = ", ".join(f"{c['label']} ({c['count']})" for c in report["small_classes"][:10])
        warnings.append(f"Found {_counted(len(report['small_classes']), 'class', 'classes')} with fewer than "
                        f"{MIN_LEARN_ROWS} rows: {names}; add examples or merge them.")
    pii = report["pii"]
    if pii["rows_with_pii"]:
        warnings.append(f"Found personal data in {_counted(pii['rows_with_pii'], 'row')} ({_pii_kinds(pii)}); "
                        "mask or remove it before training.")
    if report["leakage"] and report["leakage"]["leaked_rows"]:
        warnings.append(f"Found {_counted(report['leakage']['leaked_rows'], 'training row')} repeated in the "
                        "evaluation data; removed from training so evaluation scores stay honest.")
    issues = report["label_issues"]
    if issues and issues["model"]["reliable"] and issues["count"] > ISSUE_SHARE_WARNING * rows["kept"]:
        lines = ", ".join(str(e["line"]) for e in issues["examples"][:5])
        more = ", ..." if issues["count"] > 5 else ""
        warnings.append(f"Found {_counted(issues['count'], 'row')} ({_percent(issues['count'], rows['kept'])} "
                        f"of kept rows) {_issues_meaning(issues)}; review them under likely label errors "
                        f"(line {lines}{more}): fix the mislabelled ones, keep the ones that are just hard.")
    return warnings


def _counted(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"


def _pii_kinds(pii: dict, *, all_kinds: bool = False) -> str:
    """``e-mail 2, IBAN 1``: the kinds found (or, with ``all_kinds``, every kind counted, zeros too)."""
    return ", ".join(f"{KIND_NAMES[kind]} {pii[kind]}" for kind in KINDS if all_kinds or pii[kind])


def _redacted_kinds(redacted: dict) -> str:
    """``e-mail 2, phone 1 replaced in 3 rows`` (every kind, zeros too)."""
    return f"{_pii_kinds(redacted, all_kinds=True)} replaced in {_counted(redacted['rows_redacted'], 'row')}"


def format_data_report_text(report: dict) -> str:
    """A short plain-text summary for the terminal (about 10 to 25 lines)."""
    source, rows, labels = report["source"], report["rows"], report["labels"]
    reasons = ", ".join(f"{reason} {n}" for reason, n in rows["removed"].items() if n)
    lines = [
        f"Data: {source.get('path', '(in memory)')} ({source.get('format', '?')}, {source.get('encoding', '?')}; "
        f"text column {source.get('text_col', '?')!r}, label column {source.get('label_col', '?')!r})",
        f"Rows: {rows['read']} read, {rows['kept']} kept, {sum(rows['removed'].values())} removed"
        + (f" ({reasons})" if reasons else ""),
    ]
    if labels["n_classes"]:
        lines.append(f"Labels: {labels['n_classes']} classes; largest {labels['majority_label']!r} "
                     f"({100 * labels['majority_share']:.1f}%); imbalance {labels['imbalance_ratio']}x")
    for unit, stats in report["lengths"].items():
        if stats and stats["max"] is not None:
            over = f"; {stats['over_max_length']} over {stats['max_length']}" if unit == "tokens" else ""
            lines.append(f"Length in {unit}: mean {stats['mean']}, p95 {stats['p95']}, max {stats['max']}{over}")
    issues = report["label_issues"]
    if issues is not None:
        lines.append(f"Likely label errors: {issues['count']} ({_percent(issues['count'], max(rows['kept'], 1))})"
                     + ("" if not issues["count"] else f", rows {_issues_meaning(issues)}"
                        if issues["model"]["reliable"] else f"; {_weak_model_note(issues)}"))
        lines += [f"  line {e['line']}: {_shorten(e['text'])!r} is {e['label']!r}, looks like {e['suggested']!r} "
                  f"({e['confidence']:.2f})" for e in issues["examples"][:3]]
    pii = report["pii"]
    lines.append(f"Personal data: {_pii_kinds(pii, all_kinds=True)} "
                 f"({_counted(pii['rows_with_pii'], 'row')} with any)")
    if report.get("redacted") is not None:
        lines.append(f"Personal data redacted: {_redacted_kinds(report['redacted'])}")
    if report["leakage"] is not None:
        leak = report["leakage"]
        lines.append(f"Evaluation data: {_counted(leak['eval_rows'], 'row')}; "
                     f"{_counted(leak['leaked_rows'], 'training row')} repeated there")
    if report["warnings"]:
        lines.append("Warnings:")
        lines += [f"  - {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def render_data_report_html(report: dict) -> str:
    """The report as one self-contained HTML page."""
    source = report["source"]
    return page("Tailor data report", [
        _summary_section(report),
        section("Warnings", *([paragraph(w, "warn") for w in report["warnings"]] or [paragraph("None.", "ok")])),
        _removed_section(report["rows"]),
        section("Label distribution",
                bar_chart(list(report["labels"]["counts"].items()), fmt="{:.0f}")),
        _lengths_section(report["lengths"]),
        section("Small classes", table(["label", "rows", "problem"],
                                       [(c["label"], c["count"], c["problem"]) for c in report["small_classes"]])
                if report["small_classes"] else paragraph("None.", "ok")),
        _label_issues_section(report["label_issues"]),
        section("Personal data", table(["kind", "matches"], [(KIND_NAMES[k], report["pii"][k]) for k in KINDS]
                                       + [("rows with any", report["pii"]["rows_with_pii"])]),
                *([paragraph(f"Redacted before cleaning: {_redacted_kinds(report['redacted'])}.", "ok")]
                  if report.get("redacted") is not None else [])),
        _leakage_section(report["leakage"]),
    ], subtitle=source.get("path", ""))


def _summary_section(report: dict) -> str:
    source, rows, labels = report["source"], report["rows"], report["labels"]
    facts = [(name, source[key]) for name, key in (("file", "path"), ("format", "format"), ("encoding", "encoding"),
                                                   ("sha256", "sha256"), ("text column", "text_col"),
                                                   ("label column", "label_col")) if key in source]
    facts += [("rows read", rows["read"]), ("rows kept", rows["kept"]), ("classes", labels["n_classes"])]
    if labels["n_classes"]:
        facts += [("largest class", f"{labels['majority_label']} ({100 * labels['majority_share']:.1f}%)"),
                  ("imbalance (largest / smallest)", f"{labels['imbalance_ratio']}x")]
    return section("Summary", table(["", "value"], facts))


def _removed_section(rows: dict) -> str:
    parts = [table(["reason", "rows"], list(rows["removed"].items()))]
    for reason, examples in rows["examples"].items():
        if examples:
            parts += [paragraph(f"Examples: {reason}", "muted"), _examples_table(examples)]
    return section("Rows removed", *parts)


def _examples_table(examples: list[dict]) -> str:
    """Removed rows (line, text, label, and the conflicting labels when there are any)."""
    conflicting = "labels" in examples[0]
    return table(["line", "text", "label"] + (["labels"] if conflicting else []),
                 [[e["line"], e["text"], e["label"]] + ([", ".join(e["labels"])] if conflicting else [])
                  for e in examples])


def _lengths_section(lengths: dict) -> str:
    units = [unit for unit, stats in lengths.items() if stats]
    rows = [[stat] + [str(lengths[unit][stat]) for unit in units] for stat in _STATS]
    tokens = lengths["tokens"]
    if tokens:
        rows.append([f"over {tokens['max_length']} tokens", "", str(tokens["over_max_length"])])
    return section("Text lengths", table(["statistic"] + units, rows))


def _label_issues_section(issues: dict | None) -> str:
    if issues is None:
        return section("Likely label errors", paragraph("Not searched.", "muted"))
    if not issues["count"]:
        return section("Likely label errors", paragraph("None found.", "ok"))
    note = [] if issues["model"]["reliable"] else [paragraph(_weak_model_note(issues).capitalize() + ".", "muted")]
    return section(
        "Likely label errors",
        paragraph(f"{_counted(issues['count'], 'row')} {_issues_meaning(issues)}; the first "
                  f"{len(issues['examples'])} are shown, most certain first. Fix the mislabelled ones; keep the "
                  "ones that are just hard."),
        *note,
        table(["line", "text", "label", "suggested", "confidence"],
              [(e["line"], e["text"], e["label"], e["suggested"], e["confidence"]) for e in issues["examples"]]),
    )


def _leakage_section(leakage: dict | None) -> str:
    if leakage is None:
        return section("Leakage", paragraph("No evaluation data given.", "muted"))
    parts = [paragraph(f"{_counted(leakage['leaked_rows'], 'training row')} repeated among "
                       f"{_counted(leakage['eval_rows'], 'evaluation row')}; removed from training.")]
    if leakage["examples"]:
        parts.append(_examples_table(leakage["examples"]))
    return section("Leakage", *parts)
