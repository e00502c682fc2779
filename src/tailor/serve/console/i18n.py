"""The console's words in English and Simplified Chinese.

Each page keeps its strings in ``locales/<page>.json`` as ``{"key": {"en": "...", "zh": "..."}}``, both
languages side by side so that a missing translation shows in review; keys are unique across the files. A
string may hold ``{name}`` fields, filled by :meth:`Catalog.text`.

The language is ``?lang=en|zh`` when given (and then remembered in a cookie), else the cookie, else the first
of the browser's ``Accept-Language`` that the console speaks, else English.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request

LANGUAGES = ("en", "zh")
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}
LANG_COOKIE = "tailor_lang"
_LOCALES = Path(__file__).parent / "locales"


class Catalog:
    """Every console string in every language, loaded from ``locales/*.json``."""

    def __init__(self, strings: dict[str, dict[str, str]]):
        self.strings = strings

    @classmethod
    def load(cls, folder: Path = _LOCALES) -> "Catalog":
        """Read every locale file.

        Raises:
            ValueError: a key in two files, or a string missing a language.
        """
        strings: dict[str, dict[str, str]] = {}
        for path in sorted(folder.glob("*.json")):
            for key, texts in json.loads(path.read_text(encoding="utf-8")).items():
                if key in strings:
                    raise ValueError(f"{path.name}: key {key!r} is defined twice")
                missing = [lang for lang in LANGUAGES if not texts.get(lang)]
                if missing:
                    raise ValueError(f"{path.name}: key {key!r} has no {', '.join(missing)} text")
                strings[key] = texts
        return cls(strings)

    def text(self, lang: str, key: str, **fields) -> str:
        """The ``lang`` text of ``key`` with its fields filled.

        Raises:
            KeyError: an unknown key (a typo in a template fails its page's tests, never shows a blank).
        """
        text = self.strings[key][lang]
        return text.format(**fields) if fields else text

    def table(self, lang: str, prefix: str = "js.") -> dict[str, str]:
        """The ``lang`` texts of the keys that start with ``prefix``: what the pages' scripts need."""
        return {key: texts[lang] for key, texts in self.strings.items() if key.startswith(prefix)}


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog.load()


def pick_language(request: Request) -> str:
    """The language of this request's page (see the module's docstring)."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGUAGES:
        return remembered
    return browser_language(request.headers.get("accept-language", ""))


def browser_language(header: str) -> str:
    """The first language of an ``Accept-Language`` header that the console speaks, by quality; else English."""
    ranked = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
    for _, _, base in sorted(ranked):
        if base in LANGUAGES:
            return base
    return "en"
