"""Find personal data in texts (e-mail addresses, phone numbers, payment card numbers, ID numbers and IBANs),
count it for the data report, or redact it: :func:`redact` replaces each match by its kind's placeholder
(:data:`PLACEHOLDERS`: ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ID]``, ``[IBAN]``) and leaves every other
character as it was.

Detectors run in a fixed order (e-mail, ID numbers, IBANs, cards, phones) and each match is masked before the
next detector runs, so one number is never counted twice (a Chinese ID or an IBAN is not also a card or a phone).
Numbers with a check digit (cards: Luhn; Chinese resident IDs: ISO 7064 MOD 11-2; IBANs: MOD 97) count
only when the check digit is right.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

KINDS = ("email", "phone", "card_number", "id_number", "iban")
KIND_NAMES = {"email": "e-mail", "phone": "phone", "card_number": "card number", "id_number": "ID number",
              "iban": "IBAN"}
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "card_number": "[CARD]", "id_number": "[ID]",
                "iban": "[IBAN]"}

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_US_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_CN_RESIDENT_ID = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
_IBAN = re.compile(r"(?<![0-9A-Za-z])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![\d+])\d(?:[ -]?\d){12,18}(?![\d])")
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)")
_PHONE_NORTH_AMERICA = re.compile(r"(?<![\d(-])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-.]\d{4}(?![\d-])")
_PHONE_CN_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")

_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
_MASK = "#"


def count_pii(texts: Iterable[str]) -> dict[str, int]:
    """Count personal data in ``texts``.

    Args:
        texts: the texts to scan.

    Returns:
        ``{"email", "phone", "card_number", "id_number", "iban"}``: matches of each kind (every kind, 0 when
        none), and ``rows_with_pii``: texts with at least one match. ``id_number`` counts US social security
        numbers and Chinese resident IDs; bank account numbers count as ``iban``.
    """
    totals = dict.fromkeys(KINDS, 0)
    rows_with_pii = 0
    for text in texts:
        found = find_pii(text)
        for kind, matches in found.items():
            totals[kind] += len(matches)
        rows_with_pii += any(found.values())
    return {**totals, "rows_with_pii": rows_with_pii}


def find_pii(text: str) -> dict[str, list[str]]:
    """The personal data in one text, per kind (see :data:`KINDS`), as the matched strings."""
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for start, end, kind in pii_spans(text):
        found[kind].append(text[start:end])
    return found


def pii_spans(text: str) -> list[tuple[int, int, str]]:
    """Where the personal data in ``text`` is: ``(start, end, kind)`` character offsets, in the detectors' order
    (then by position); spans never overlap."""
    spans = []
    for kind, pattern, is_valid in _DETECTORS:
        matches = [m for m in pattern.finditer(text) if is_valid(m.group())]
        for m in matches:
            spans.append((m.start(), m.end(), kind))
            text = text[:m.start()] + _MASK * (m.end() - m.start()) + text[m.end():]
    return spans


def redact(text: str) -> tuple[str, dict[str, int]]:
    """Replace the personal data in ``text`` by its kind's placeholder (:data:`PLACEHOLDERS`).

    Returns:
        The redacted text, and the replacements per kind (every kind of :data:`KINDS`, 0 when none).
    """
    counts = dict.fromkeys(KINDS, 0)
    spans = sorted(pii_spans(text))
    if not spans:
        return text, counts
    parts, position = [], 0
    for start, end, kind in spans:
        parts += [text[position:start], PLACEHOLDERS[kind]]
        counts[kind] += 1
        position = end
    parts.append(text[position:])
    return "".join(parts), counts


def redact_texts(texts: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """:func:`redact` over many texts.

    Returns:
        The redacted texts in order, and the replacements per kind plus ``rows_redacted``: texts changed.
    """
    totals = dict.fromkeys(KINDS, 0)
    rows_redacted = 0
    redacted = []
    for text in texts:
        clean, counts = redact(text)
        redacted.append(clean)
        for kind, n in counts.items():
            totals[kind] += n
        rows_redacted += clean != text
    return redacted, {**totals, "rows_redacted": rows_redacted}


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def luhn_valid(number: str) -> bool:
    """Whether the digits of ``number`` pass the Luhn check used by payment cards."""
    total = 0
    for position, char in enumerate(reversed(_digits(number))):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def cn_resident_id_valid(number: str) -> bool:
    """Whether an 18-character Chinese resident ID has the right check character (ISO 7064 MOD 11-2)."""
    weighted = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[weighted % 11] == number[17].upper()


def iban_valid(iban: str) -> bool:
    """Whether an IBAN (spaces allowed) is 15-34 characters long and passes the MOD 97 check."""
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_valid(number: str) -> bool:
    return 13 <= len(_digits(number)) <= 19 and luhn_valid(number)


def _international_phone_valid(number: str) -> bool:
    return 8 <= len(_digits(number)) <= 15  # E.164 numbers have at most 15 digits


def _always(_: str) -> bool:
    return True


_DETECTORS: tuple[tuple[str, re.Pattern, Callable[[str], bool]], ...] = (
    ("email", _EMAIL, _always),
    ("id_number", _US_SSN, _always),
    ("id_number", _CN_RESIDENT_ID, cn_resident_id_valid),
    ("iban", _IBAN, iban_valid),
    ("card_number", _CARD, _card_valid),
    ("phone", _PHONE_INTERNATIONAL, _international_phone_valid),
    ("phone", _PHONE_NORTH_AMERICA, _always),
    ("phone", _PHONE_CN_MOBILE, _always),
)
