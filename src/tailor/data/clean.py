"""Remove rows that would hurt training, and count why each went.

Rows pass through the rules in this order; a row removed by one rule is not looked at by the next:

1. ``empty``: the text is empty or whitespace, or the label is empty.
2. ``too_long``: the stripped text has more than ``max_chars`` characters.
3. ``conflicting_labels``: the same normalized text (see :func:`normalize_text`) carries two or more labels.
   If one label holds at least two thirds of those rows, its first row stays and the rows with other
   labels are conflicting; otherwise every row of the text is.
4. ``duplicate_exact`` / ``duplicate_normalized``: a later row with the same label and the same stripped
   (exact) or normalized text as an earlier one; the first stays.
5. ``leaked_into_eval``: a row that would stay but whose normalized text is in the evaluation data.

Kept rows keep their order; texts and labels lose their surrounding whitespace and nothing else, unless
personal data is redacted first (``redact_pii``: e-mails, phones, card, ID and IBAN numbers become
``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ID]``, ``[IBAN]``; see :func:`tailor.data.pii.redact`), so that the rules,
the examples of removed rows and training all see the redacted texts.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

from tailor.data.dataset import TextDataset
from tailor.data.pii import redact_texts

REASONS = ("empty", "too_long", "duplicate_exact", "duplicate_normalized", "conflicting_labels",
           "leaked_into_eval")
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 200
_MAJORITY_SHARE = 2 / 3


@dataclass(frozen=True)
class CleanResult:
    """What cleaning kept and what it removed.

    Attributes:
        dataset: the kept rows, in their original order, with stripped texts and labels.
        removed: rows removed per reason; every key of :data:`REASONS`, in that order.
        examples: up to five removed rows per reason, ``{"line", "text", "label"}`` (conflicting ones also
            ``"labels"``: the labels the text carries).
        redacted: with ``redact_pii``, the personal data replaced in the rows as read, per kind, and
            ``rows_redacted`` (see :func:`tailor.data.pii.redact_texts`); None without.
    """

    dataset: TextDataset
    removed: dict[str, int]
    examples: dict[str, list[dict]]
    redacted: dict[str, int] | None = None


def normalize_text(text: str) -> str:
    """The form under which two texts count as the same: NFKC, case-folded, single spaces, no end punctuation."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(folded)
    while start < end and _is_punctuation_or_space(folded[start]):
        start += 1
    while end > start and _is_punctuation_or_space(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _is_punctuation_or_space(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def clean_dataset(ds: TextDataset, *, max_chars: int, eval_ds: TextDataset | None = None,
                  redact_pii: bool = False) -> CleanResult:
    """Apply the rules in the module docstring.

    Args:
        ds: the rows as read.
        max_chars: longest text kept, in characters.
        eval_ds: evaluation rows; training rows that repeat one of them are removed (with ``redact_pii``,
            compared with the evaluation texts redacted alike).
        redact_pii: replace personal data by typed placeholders before the rules.

    Returns:
        The kept dataset with counts and examples of what went.
    """
    texts = [t.strip() for t in ds.texts]
    redacted = None
    if redact_pii:
        texts, redacted = redact_texts(texts)
        if eval_ds is not None:
            eval_ds = replace(eval_ds, texts=redact_texts(eval_ds.texts)[0])
    labels = [label.strip() for label in ds.labels]
    reason_of: dict[int, str] = {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (text, label) in enumerate(zip(texts, labels)):
        if not text or not label:
            reason_of[i] = "empty"
        elif len(text) > max_chars:
            reason_of[i] = "too_long"
        else:
            groups[normalize_text(text)].append(i)

    eval_keys = {normalize_text(t) for t in eval_ds.texts} - {""} if eval_ds is not None else set()
    for key, rows in groups.items():
        reason_of.update(_group_reasons(rows, texts, labels, leaked=key in eval_keys))

    kept = [i for i in range(len(ds)) if i not in reason_of]
    cleaned = replace(ds.subset(kept), texts=[texts[i] for i in kept], labels=[labels[i] for i in kept])
    removed = Counter(reason_of.values())
    return CleanResult(
        dataset=cleaned,
        removed={reason: removed[reason] for reason in REASONS},
        examples=_examples(sorted(reason_of.items()), texts, labels, ds.lines, groups),
        redacted=redacted,
    )


def _group_reasons(rows: list[int], texts: list[str], labels: list[str], *, leaked: bool) -> dict[int, str]:
    """Why rows sharing one normalized text go (rules 3 to 5); the row that stays is absent."""
    majority, count = Counter(labels[i] for i in rows).most_common(1)[0]
    if count < _MAJORITY_SHARE * len(rows):
        return dict.fromkeys(rows, "conflicting_labels")
    reasons = {i: "conflicting_labels" for i in rows if labels[i] != majority}
    first, *others = [i for i in rows if labels[i] == majority]
    seen_exact = {texts[first]}
    for i in others:
        reasons[i] = "duplicate_exact" if texts[i] in seen_exact else "duplicate_normalized"
        seen_exact.add(texts[i])
    if leaked:
        reasons[first] = "leaked_into_eval"
    return reasons


def _examples(reasons: list[tuple[int, str]], texts: list[str], labels: list[str], lines: list[int],
              groups: dict[str, list[int]]) -> dict[str, list[dict]]:
    """Up to :data:`MAX_EXAMPLES` removed rows per reason, in file order; conflicting ones with their labels."""
    examples: dict[str, list[dict]] = {reason: [] for reason in REASONS}
    for i, reason in reasons:
        if len(examples[reason]) < MAX_EXAMPLES:
            example = {"line": lines[i], "text": texts[i][:EXAMPLE_CHARS], "label": labels[i]}
            if reason == "conflicting_labels":
                example["labels"] = sorted({labels[j] for j in groups[normalize_text(texts[i])]})
            examples[reason].append(example)
    return examples
