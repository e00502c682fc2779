"""The console's model card page: the card of a version rendered as HTML with everything it quotes escaped,
its metadata as YAML, linked from the version's page, in both languages, tenant-isolated."""

from __future__ import annotations

import re

from tailor.registry.service import open_registry

LABELS = ["<b>ham</b>", "spam"]
METRICS = {"test": {"n": 10, "accuracy": 0.8, "macro_f1": 0.7917, "weighted_f1": 0.8,
                    "per_class": {"<b>ham</b>": {"precision": 0.8333, "recall": 0.8333, "f1": 0.8333, "support": 6},
                                  "spam": {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}}},
           "baseline": {"label": "<b>ham</b>", "accuracy": 0.6, "macro_f1": 0.375, "weighted_f1": 0.45}}
LINEAGE = {"dataset": {"path": "/srv/tailor/files/acme/secret-place.csv", "sha256": "ab12cd34ef56" + "0" * 52,
                       "format": "csv", "rows_read": 60},
           "rows": {"train": 48, "valid": 6, "test": 10}, "label_counts": {"<b>ham</b>": 30, "spam": 18}}


def publish_mail(settings):
    registry = open_registry(settings)
    with registry.artifacts.stage() as staged:
        (staged / "tailor_model.json").write_text("{}", encoding="utf-8")
        return registry.publish_version("acme", "mail", staged, task="classify", base_model="minilm-l6",
                                        method="full", params={"epochs": 3, "max_length": 128}, metrics=METRICS,
                                        lineage=LINEAGE, description="Sorts <script>alert(1)</script> mail")


def test_the_version_page_links_to_the_card_page(console, settings):
    publish_mail(settings)
    page = console.get("/console/models/mail/1")
    assert page.status_code == 200, page.text
    assert '<a id="model-card-link" href="/console/models/mail/1/card">Model card</a>' in page.text


def test_the_card_page_renders_the_card_escaped(console, settings):
    publish_mail(settings)
    page = console.get("/console/models/mail/1/card")
    assert page.status_code == 200, page.text
    html = page.text
    assert "<title>Model card of mail:1" in html
    article = html.split('<article id="model-card" class="model-card">', 1)[1].split("</article>", 1)[0]
    assert re.findall(r"<h2>([^<]+)</h2>", article) == [
        "Model details", "Intended use", "Training data", "Evaluation", "Evaluation on slices", "Calibration",
        "Explanation examples", "Limitations", "How to use"]
    assert "<h1>mail:1</h1>" in article
    assert "<td>&lt;b&gt;ham&lt;/b&gt;</td>" in article and "<b>ham</b>" not in html
    assert "<blockquote>\n<p>Sorts &lt;script&gt;alert(1)&lt;/script&gt; mail</p>\n</blockquote>" in article
    assert "<script>alert" not in html and "secret-place" not in html
    assert '<pre><code class="language-bash">tailor predict mail:1 &quot;a text to label&quot;' in article
    metadata = html.split('<details id="card-metadata">', 1)[1].split("</details>", 1)[0]
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2\nlicense: apache-2.0\n" in metadata
    assert '<a id="card-raw" href="/v1/models/mail%3A1/card">' in html
    raw = console.get("/v1/models/mail%3A1/card")  # the API answers the console's session too
    assert raw.status_code == 200 and raw.text.startswith("---\nbase_model: sentence-transformers/all-MiniLM-L6-v2")


def test_the_card_page_speaks_chinese_and_is_the_tenants_own(console, app, settings, globex):
    from fastapi.testclient import TestClient

    from console.conftest import sign_in

    publish_mail(settings)
    page = console.get("/console/models/mail/1/card?lang=zh")
    assert "<title>mail:1 的模型卡" in page.text and "元数据（YAML）" in page.text
    with TestClient(app, raise_server_exceptions=False) as other:
        sign_in(other, globex.key)
        assert other.get("/console/models/mail/1/card").status_code == 404
