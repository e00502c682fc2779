"""``GET /v1/models/{model_id}/card``: the version's model card as markdown, resolved like every
``/v1/models/{model_id}`` route (another tenant's model is not found); ``hf`` export archives carry the same
card as README.md and are rebuilt when it changes."""

from __future__ import annotations

import io
import zipfile

import pytest

from api_helpers import error_of, publish_copy
from tailor.models.card import version_card
from tailor.registry.service import open_registry


@pytest.fixture
def tweets(settings, head_artifact, acme):
    """acme's head-only classifier ``tweets``, version 1."""
    return publish_copy(settings, head_artifact, "acme", "tweets")


@pytest.mark.parametrize("model_id", ["tweets", "tweets:1", "tweets@latest"])
def test_the_card_is_served_as_markdown(client, acme, tweets, settings, model_id):
    response = client.get(f"/v1/models/{model_id}/card", headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.text == version_card(open_registry(settings).store, tweets)
    assert response.text.startswith("---\nbase_model: sentence-transformers/all-MiniLM-L6-v2\n")


def test_another_tenants_model_and_a_missing_version_are_not_found(client, acme, globex, tweets):
    error = error_of(client.get("/v1/models/tweets/card", headers=globex.headers), 404)
    assert error["message"] == "model 'tweets' not found"
    error = error_of(client.get("/v1/models/tweets:2/card", headers=acme.headers), 404)
    assert error["message"] == "version tweets:2 not found"
    error_of(client.get("/v1/models/tweets/card", headers={"Authorization": "Bearer nope"}), 401)


def test_a_base_model_has_no_card_here(client, acme):
    error = error_of(client.get("/v1/models/minilm-l6/card", headers=acme.headers), 400)
    assert (error["param"], error["message"]) == (
        "model_id", "'minilm-l6' is a base model of the catalog; model cards describe fine-tuned versions")


def test_the_hf_export_archive_carries_the_card_and_follows_its_changes(client, acme, settings, chat_artifact):
    version = publish_copy(settings, chat_artifact, "acme", "reviews")
    store = open_registry(settings).store

    def readme() -> str:
        response = client.get("/v1/models/reviews/export?format=hf", headers=acme.headers)
        assert response.status_code == 200, response.text
        return zipfile.ZipFile(io.BytesIO(response.content)).read("reviews-v1-hf/README.md").decode()

    first = readme()
    assert first == version_card(store, version, export="hf")
    assert first == client.get("/v1/models/reviews/card", headers=acme.headers).text.replace(
        "library_name: peft", "library_name: transformers").replace(
        "PEFT's layout)", "PEFT's layout); merged into the base's weights in this export").replace(
        "Plain transformers loads `tailor models export reviews:1 --format hf --out EXPORT_DIR`:",
        "Plain transformers loads this directory:")
    cache = settings.home / "cache" / "exports" / version.artifact_path
    [built] = list(cache.iterdir())
    assert readme() == first and list(cache.iterdir()) == [built]  # served from the cache

    store.update_metrics("acme", "reviews", 1, {"test": {**version.metrics["test"], "perplexity": 12.5}})
    second = readme()
    assert second == version_card(store, store.get_version("acme", "reviews", 1), export="hf") != first
    assert "value: 12.5\n" in second
    [rebuilt] = list(cache.iterdir())  # the archive with the stale card is gone
    assert rebuilt != built and rebuilt.name.startswith("hf-") and rebuilt.name.endswith(".zip")
