"""Counterfactual checks: swap protected terms in the test texts (he/she, names, ethnic and regional terms) and
count how often the prediction changes.

Term lists are JSON objects of groups, each a list of pairs; a pair swaps both ways::

    {"gender": [["he", "she"], ["mr", "mrs"]], "region": [["北方", "南方"]]}

Tailor ships English and Chinese lists (``tailor/eval/terms/en.json`` and ``zh.json``); a user's file in the
same format is merged with them (its pairs first, so it wins where a term is in both). A term is lower-case
letters for English and matched as a whole word, in any case, the swap taking the case of the original
(``He`` -> ``She``, ``MR`` -> ``MRS``); a term with a Chinese character is matched as a plain substring. When a
term is in two pairs, the first pair decides its swap (``her`` -> ``him`` from ``him``/``her``, not
``his``). All swaps in a text are made at once, in one pass, so ``he said she`` becomes ``she said he``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

from tailor.errors import DataError

SHIPPED = ("en.json", "zh.json")
MAX_EXAMPLES = 20
MAX_TERM_CHARS = 64
_HAN = re.compile(r"[\u3400-\u9fff]")


def read_terms(text: str, source: str) -> dict[str, list[tuple[str, str]]]:
    """Parse a term list (see the module docstring).

    Raises:
        DataError: not JSON, not an object of lists of two distinct non-empty strings (names the group and
            the pair's position).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f'{source}: expected an object of groups of pairs, e.g. {{"gender": [["he", "she"]]}}')
    groups: dict[str, list[tuple[str, str]]] = {}
    for group, pairs in data.items():
        if not isinstance(pairs, list):
            raise DataError(f"{source}: group {group!r} must be a list of pairs", field=group)
        for k, pair in enumerate(pairs):
            if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(t, str) and t.strip() for t in pair)
                    or pair[0].strip().lower() == pair[1].strip().lower()
                    or any(len(t) > MAX_TERM_CHARS for t in pair)):
                raise DataError(f"{source}: group {group!r}, pair {k + 1}: expected two different terms "
                                f"(strings of 1-{MAX_TERM_CHARS} characters), got {json.dumps(pair)[:80]}",
                                field=group)
        groups[group] = [(a.strip().lower(), b.strip().lower()) for a, b in pairs]
    return groups


def shipped_terms() -> dict[str, list[tuple[str, str]]]:
    """The English and Chinese lists shipped with Tailor, merged (groups of the same name joined)."""
    merged: dict[str, list[tuple[str, str]]] = {}
    for name in SHIPPED:
        text = resources.files("tailor.eval").joinpath("terms", name).read_text(encoding="utf-8")
        for group, pairs in read_terms(text, name).items():
            merged.setdefault(group, []).extend(pairs)
    return merged


def load_terms(path: str | Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """The shipped lists, with the user's file at ``path`` merged in front (its pairs win).

    Raises:
        DataError: the file cannot be read or is not a valid term list.
    """
    terms = shipped_terms()
    if path is None:
        return terms
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the terms file {path}: {exc}") from None
    user = read_terms(text, str(path))
    groups = [*user, *(g for g in terms if g not in user)]
    return {group: user.get(group, []) + terms.get(group, []) for group in groups}


@dataclass(frozen=True)
class Swapper:
    """Swaps every protected term of a text at once (build it with :func:`build_swapper`)."""

    pattern: re.Pattern
    swaps: dict[str, tuple[str, str]]  # lower-cased term -> (its swap, group)

    def swap(self, text: str) -> tuple[str, list[str]]:
        """``(the swapped text, ["he->she", ...])``; the list is empty when no term occurs."""
        done: list[str] = []

        def replace(match: re.Match) -> str:
            found = match.group(0)
            swap, _ = self.swaps[found.lower()]
            done.append(f"{found}->{_same_case(found, swap)}")
            return _same_case(found, swap)

        return self.pattern.sub(replace, text), done


def _same_case(original: str, swap: str) -> str:
    if original.isupper() and len(original) > 1:
        return swap.upper()
    if original[:1].isupper():
        return swap[:1].upper() + swap[1:]
    return swap


def build_swapper(terms: dict[str, list[tuple[str, str]]]) -> Swapper:
    """One pattern over every term: longest first (``女士`` before ``女``), English terms between word
    boundaries, Chinese ones as substrings; the first pair that names a term decides its swap."""
    swaps: dict[str, tuple[str, str]] = {}
    for group, pairs in terms.items():
        for a, b in pairs:
            swaps.setdefault(a, (b, group))
            swaps.setdefault(b, (a, group))
    ordered = sorted(swaps, key=lambda t: (-len(t), t))
    parts = [re.escape(t) if _HAN.search(t) else rf"(?<!\w){re.escape(t)}(?!\w)" for t in ordered]
    return Swapper(re.compile("|".join(parts), re.IGNORECASE), swaps)


def counterfactual_check(texts: Sequence[str], predictions: Sequence[str],
                         predict: Callable[[list[str]], list[str]], swapper: Swapper,
                         lines: Sequence[int] | None = None, max_examples: int = MAX_EXAMPLES) -> dict:
    """Predict every text that holds a protected term again with its terms swapped, in one batched call.

    Args:
        texts: the test texts.
        predictions: the model's labels for ``texts`` (already predicted with the rest of the evaluation).
        predict: labels of a list of texts (one batched call for all swapped texts).
        lines: each text's line in the file, for the examples.

    Returns:
        ``{"checked": texts with at least one term, "flipped": of those, the ones whose label changed,
        "flip_rate": flipped / checked (None when nothing was checked), "by_group": {group: {"checked",
        "flipped"}}, "examples": [{"line", "text", "swapped", "swaps", "predicted", "swapped_predicted"}]}``;
        the examples are flipped texts in file order, at most ``max_examples``.
    """
    swapped: list[tuple[int, str, list[str]]] = []
    for i, text in enumerate(texts):
        new, done = swapper.swap(text)
        if done:
            swapped.append((i, new, done))
    labels = predict([new for _, new, _ in swapped]) if swapped else []
    by_group: dict[str, dict[str, int]] = {}
    examples, flipped = [], 0
    for (i, new, done), label in zip(swapped, labels):
        changed = label != predictions[i]
        flipped += changed
        for group in sorted({swapper.swaps[d.split("->")[0].lower()][1] for d in done}):
            counts = by_group.setdefault(group, {"checked": 0, "flipped": 0})
            counts["checked"] += 1
            counts["flipped"] += changed
        if changed and len(examples) < max_examples:
            examples.append({"line": lines[i] if lines is not None else i + 1, "text": texts[i], "swapped": new,
                             "swaps": done, "predicted": predictions[i], "swapped_predicted": label})
    checked = len(swapped)
    return {"checked": checked, "flipped": flipped, "flip_rate": round(flipped / checked, 4) if checked else None,
            "by_group": dict(sorted(by_group.items())), "examples": examples}


def format_counterfactual_text(result: dict) -> str:
    """The counterfactual summary for a terminal."""
    if not result["checked"]:
        return "counterfactual: no text holds a protected term"
    lines = [f"counterfactual: {result['flipped']} of {result['checked']} texts with a protected term changed "
             f"label when it was swapped (flip rate {result['flip_rate']:.4f})"]
    lines += [f"  {group}: {c['flipped']}/{c['checked']}" for group, c in result["by_group"].items()]
    for example in result["examples"][:5]:
        lines.append(f"  line {example['line']}: {example['predicted']} -> {example['swapped_predicted']} "
                     f"({', '.join(example['swaps'][:4])}): {example['swapped'][:100]}")
    return "\n".join(lines)
