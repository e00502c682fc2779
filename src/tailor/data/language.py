"""Which scripts a dataset is written in, and whether it needs a multilingual base model.

Only letters count (Unicode categories L*), so digits, punctuation, emoji and ``$TSLA``-style tickers do not
dilute the shares. Scripts are told apart by code-point blocks: Han, Kana and Hangul together are "CJK".
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence

SCRIPTS = ("cjk", "latin", "cyrillic", "arabic", "other")
SCRIPT_NAMES = {"cjk": "CJK", "latin": "Latin", "cyrillic": "Cyrillic", "arabic": "Arabic", "other": "other"}
MULTILINGUAL_THRESHOLD = 0.30  # above this share of non-Latin letters an English-only encoder is a poor fit

# (first, last, script) code-point blocks, sorted; letters outside them are "other"
_BLOCKS = sorted([
    (0x0041, 0x024F, "latin"),  # Basic Latin letters .. Latin Extended-B
    (0x0250, 0x02AF, "latin"),  # IPA extensions
    (0x1D00, 0x1DBF, "latin"),  # phonetic extensions
    (0x1E00, 0x1EFF, "latin"),  # Latin Extended Additional (Vietnamese)
    (0x2C60, 0x2C7F, "latin"),
    (0xA720, 0xA7FF, "latin"),
    (0xAB30, 0xAB6F, "latin"),
    (0xFB00, 0xFB06, "latin"),  # ligatures ﬀ ﬁ
    (0xFF21, 0xFF5A, "latin"),  # full-width Latin
    (0x0400, 0x052F, "cyrillic"),
    (0x1C80, 0x1C8F, "cyrillic"),
    (0x2DE0, 0x2DFF, "cyrillic"),
    (0xA640, 0xA69F, "cyrillic"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0870, 0x08FF, "arabic"),
    (0xFB50, 0xFDFF, "arabic"),  # presentation forms A
    (0xFE70, 0xFEFF, "arabic"),  # presentation forms B
    (0x1100, 0x11FF, "cjk"),  # Hangul Jamo
    (0x2E80, 0x2FDF, "cjk"),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007, "cjk"),  # 々 〆 〇
    (0x3021, 0x3029, "cjk"),  # Hangzhou numerals
    (0x3031, 0x3035, "cjk"),  # Kana repeat marks
    (0x303B, 0x303C, "cjk"),
    (0x3040, 0x30FF, "cjk"),  # Hiragana, Katakana
    (0x3100, 0x312F, "cjk"),  # Bopomofo
    (0x3130, 0x318F, "cjk"),  # Hangul compatibility Jamo
    (0x31A0, 0x31BF, "cjk"),  # Bopomofo extended
    (0x31F0, 0x31FF, "cjk"),  # Katakana phonetic extensions
    (0x3400, 0x4DBF, "cjk"),  # CJK extension A
    (0x4E00, 0x9FFF, "cjk"),  # CJK unified ideographs
    (0xA960, 0xA97F, "cjk"),  # Hangul Jamo extended-A
    (0xAC00, 0xD7FF, "cjk"),  # Hangul syllables, Jamo extended-B
    (0xF900, 0xFAFF, "cjk"),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC, "cjk"),  # half-width Katakana and Hangul
    (0x1B000, 0x1B16F, "cjk"),  # Kana supplement, extended-A, small Kana
    (0x20000, 0x323AF, "cjk"),  # CJK extensions B..H, compatibility supplement
])
_STARTS = [first for first, _, _ in _BLOCKS]
# one character class per named script group: a text's letters are counted in C, a few microseconds a text
_PATTERNS = {
    script: re.compile("[" + "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last, s in _BLOCKS if s == script)
                       + "]")
    for script in ("latin", "cjk", "cyrillic", "arabic")
}


def script_of(char: str) -> str | None:
    """The script group of one character, or ``None`` when it is not a letter."""
    if not char.isalpha():
        return None
    code = ord(char)
    i = bisect_right(_STARTS, code) - 1
    if i >= 0 and code <= _BLOCKS[i][1]:
        return _BLOCKS[i][2]
    return "other"


def main_script(text: str) -> str | None:
    """The script group most of ``text``'s letters are in (``latin``, ``cjk``, ``cyrillic``, ``arabic``), or
    ``None`` when it has none of their letters. Ties go to the group listed first."""
    best, best_count = None, 0
    for script, pattern in _PATTERNS.items():
        count = len(pattern.findall(text))
        if count > best_count:
            best, best_count = script, count
    return best


def _sample(texts: Sequence[str], sample: int) -> Sequence[str]:
    """At most ``sample`` texts, evenly spaced over the whole set so a sorted file is not judged by its head."""
    if len(texts) <= sample:
        return texts
    step = len(texts) / sample
    return [texts[int(i * step)] for i in range(sample)]


def detect_script(texts: Sequence[str], sample: int = 2000) -> dict:
    """Shares of letters per script group in (a sample of) ``texts``.

    Args:
        texts: the dataset's texts.
        sample: at most this many texts are read, evenly spaced.

    Returns:
        ``{"cjk", "latin", "cyrillic", "arabic", "other"}`` as fractions of all letters (each 0.0 when there
        are no letters), plus ``"letters"``: the number of letters counted and ``"texts"``: texts read.
    """
    chosen = _sample(list(texts) if not isinstance(texts, Sequence) else texts, sample)
    counts = dict.fromkeys(SCRIPTS, 0)
    for text in chosen:
        for char in text:
            script = script_of(char)
            if script is not None:
                counts[script] += 1
    letters = sum(counts.values())
    shares = {script: (count / letters if letters else 0.0) for script, count in counts.items()}
    return {**shares, "letters": letters, "texts": len(chosen)}


def needs_multilingual(texts: Sequence[str]) -> tuple[bool, str]:
    """Whether ``texts`` call for a multilingual base model, with the reason in words.

    True when more than 30% of letters are non-Latin; the reason names the largest non-Latin script
    (``"78% of letters are CJK"``) or, for a mix, all of them.
    """
    shares = detect_script(texts)
    if not shares["letters"]:
        return False, "no letters found"
    foreign = {s: shares[s] for s in SCRIPTS if s != "latin" and shares[s] > 0}
    total = sum(foreign.values())
    if total <= MULTILINGUAL_THRESHOLD:
        return False, f"{_percent(shares['latin'])} of letters are Latin"
    top = max(foreign, key=foreign.get)
    if foreign[top] > MULTILINGUAL_THRESHOLD:
        return True, f"{_percent(foreign[top])} of letters are {SCRIPT_NAMES[top]}"
    mix = ", ".join(f"{SCRIPT_NAMES[s]} {_percent(v)}" for s, v in sorted(foreign.items(), key=lambda kv: -kv[1]))
    return True, f"{_percent(total)} of letters are non-Latin ({mix})"


def _percent(share: float) -> str:
    return f"{round(share * 100)}%"
