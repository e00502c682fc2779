"""Where a model is worst, found without a slice column: text-length bands, the script a text is written in,
and the texts that contain one of the most frequent words.

Candidate slices:

* ``length``: the quartile bands of the texts' lengths in characters (``<= 42 chars``, ``43-80 chars``, ...);
* ``language``: the main script of each text (:func:`tailor.data.language.main_script`), when there are two or more;
* ``word``: ``contains W`` for the :data:`TOP_WORDS` content words found in the most texts (English words of
  three letters or more outside a short stop list, lower-cased; Chinese as character pairs), each in at least
  ``min_rows`` texts and not in all of them.

Each slice with at least ``min_rows`` rows is scored (:func:`tailor.eval.slices.slice_scores`) and compared
with the rows outside it: ``gap`` is the rest's accuracy minus the slice's, and the slice is ``significant``
when the upper end of its Wilson 95% interval is below the rest's accuracy. The worst (largest gap first,
gaps above 0 only) are reported.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from tailor.data.language import main_script
from tailor.eval.slices import MIN_SLICE_ROWS, round4, slice_scores

TOP_WORDS = 30
MAX_WORST = 10
_LATIN_WORD = re.compile(r"(?:(?![\u3400-\u9fff])[^\W\d_]){3,}")  # words of letters, Han excluded
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
STOP_WORDS = frozenset("""
the and for are but not you all any can had her was one our out has him his how its may new now see who did
get let put say she too use that with this from they have were been will would there their what when which
your than then them these those into over also only just more most some such very about after again could
should other because while where being does doing each few both here same own off under until why yes nor
""".split())


def content_words(text: str) -> set[str]:
    """The distinct words of ``text`` the finder slices on (see the module docstring)."""
    words = {w for w in (m.lower() for m in _LATIN_WORD.findall(text)) if w not in STOP_WORDS}
    for run in _HAN_RUN.findall(text):
        words.update(run[i:i + 2] for i in range(len(run) - 1))
    return words


def length_bands(texts: Sequence[str]) -> list[str]:
    """Each text's quartile band of character length, named by its bounds (``<= 42 chars``, ``43-80 chars``,
    ``> 150 chars``); ties at a boundary fall in the lower band."""
    lengths = [len(t) for t in texts]
    ordered = sorted(lengths)
    cuts = sorted({ordered[(len(ordered) - 1) * q // 4] for q in (1, 2, 3)})

    def band(length: int) -> str:
        for k, cut in enumerate(cuts):
            if length <= cut:
                return f"<= {cut} chars" if k == 0 else f"{cuts[k - 1] + 1}-{cut} chars"
        return f"> {cuts[-1]} chars"

    return [band(n) for n in lengths]


def _candidates(texts: Sequence[str], min_rows: int, top_words: int) -> list[tuple[str, str, list[int]]]:
    """``(column, value, row indices)`` of every candidate slice."""
    out: list[tuple[str, str, list[int]]] = []
    for column, values in (("length", length_bands(texts)), ("language", [main_script(t) or "none" for t in texts])):
        groups: dict[str, list[int]] = {}
        for i, value in enumerate(values):
            groups.setdefault(value, []).append(i)
        if len(groups) > 1:
            out += [(column, value, idx) for value, idx in sorted(groups.items())]
    words = [content_words(t) for t in texts]
    frequency = Counter(w for ws in words for w in ws)
    common = [w for w, n in sorted(frequency.items(), key=lambda item: (-item[1], item[0]))
              if min_rows <= n < len(texts)][:top_words]
    out += [("word", f"contains {w}", [i for i, ws in enumerate(words) if w in ws]) for w in common]
    return out


def find_worst_slices(texts: Sequence[str], y_true: Sequence[str], y_pred: Sequence[str],
                      positive: str | None = None, *, min_rows: int = MIN_SLICE_ROWS, top_words: int = TOP_WORDS,
                      limit: int = MAX_WORST) -> list[dict]:
    """The slices where the model does worst compared with the rest of the rows.

    Args:
        texts / y_true / y_pred: the rows' texts, gold labels and predictions.
        positive: the positive class of a binary task (for the positive rates), or None.
        min_rows: a slice needs this many rows to be considered.
        limit: at most this many slices are returned.

    Returns:
        Slice rows (:func:`~tailor.eval.slices.slice_scores`) with ``gap`` (the rest's accuracy minus the
        slice's), ``rest_accuracy`` and ``significant`` added; largest gap first, then column and value; only
        slices with a positive gap.
    """
    found = []
    for column, value, idx in _candidates(texts, min_rows, top_words):
        if len(idx) < min_rows or len(idx) == len(texts):
            continue
        inside = set(idx)
        rest = [i for i in range(len(texts)) if i not in inside]
        rest_accuracy = sum(1 for i in rest if y_true[i] == y_pred[i]) / len(rest)
        row = slice_scores(column, value, [y_true[i] for i in idx], [y_pred[i] for i in idx], positive, min_rows)
        gap = round4(rest_accuracy - row["accuracy"])
        if gap > 0:
            found.append(row | {"gap": gap, "rest_accuracy": round4(rest_accuracy),
                                "significant": row["accuracy_ci"][1] < round4(rest_accuracy)})
    found.sort(key=lambda s: (-s["gap"], s["column"], s["value"]))
    return found[:limit]


def format_worst_text(worst: list[dict]) -> str:
    """The finder's slices for a terminal, one line each (``*``: significant)."""
    if not worst:
        return "worst slices: none worse than the rest"
    lines = ["worst slices (vs. the other rows; * significant at 95%):"]
    for s in worst:
        low, high = s["accuracy_ci"]
        where = f"{s['column']}: {s['value']}"
        lines.append(f"  {'*' if s['significant'] else ' '} {where[:40]:<40} n={s['n']:<6} "
                     f"accuracy {s['accuracy']:.3f} [{low:.3f}, {high:.3f}] vs {s['rest_accuracy']:.3f}  "
                     f"gap {s['gap']:.3f}")
    return "\n".join(lines)
