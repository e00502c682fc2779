"""The playground's "Explain" checkbox: shown beside the classify form in English and Chinese, sent as
``"explain"`` by the script, answered with each word's weight through the session cookie, and rendered as
text (marks built with the DOM, never HTML)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from api_helpers import publish_copy

SCRIPT = Path(__file__).parents[2] / "src" / "tailor" / "serve" / "console" / "static" / "playground.js"


@pytest.fixture
def sentiment(settings, acme, head_artifact):
    return publish_copy(settings, head_artifact, "acme", "sentiment")


def test_the_classify_form_has_the_explain_checkbox_in_both_languages(console, sentiment):
    html = console.get("/console/playground?model=sentiment&lang=en").text
    assert '<input type="checkbox" id="pg-explain" name="explain" aria-describedby="pg-explain-help">' in html
    assert '<label for="pg-explain" class="inline">Explain</label>' in html
    strings = json.loads(re.search(r'<script type="application/json" id="tailor-strings">(.*?)</script>',
                                   html, re.S).group(1))
    assert strings["js.playground.explained"].startswith("The text, each word coloured by its weight")
    chinese = console.get("/console/playground?model=sentiment&lang=zh").text
    assert '<label for="pg-explain" class="inline">解释</label>' in chinese


def test_the_script_asks_for_explanations_and_builds_marks_without_html(console, sentiment):
    script = SCRIPT.read_text(encoding="utf-8")
    assert "explain: form.elements.explain.checked" in script
    assert "innerHTML" not in script and 'Tailor.el("mark"' in script
    response = console.post("/v1/classifications", json={"model": "sentiment", "input": ["Stocks rally"],
                                                         "explain": True}, headers={"X-CSRF-Token": console.csrf})
    assert response.status_code == 200, response.text
    [row] = response.json()["data"]
    assert [(t["token"], t["start"], t["end"]) for t in row["explanation"]] == [("Stocks", 0, 6), ("rally", 7, 12)]
