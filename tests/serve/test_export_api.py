"""``GET /v1/models/{model_id}/export``: a version's export as a .zip or .tar.gz download, built once into the
cache; formats the version lacks, base models and another tenant's models refused."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from api_helpers import error_of, publish_copy

ONNX_FILES = ["model.onnx", "tailor_model.json", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture
def tweets(settings, head_artifact, acme):
    """acme's head-only classifier ``tweets``, version 1."""
    return publish_copy(settings, head_artifact, "acme", "tweets")


def test_a_head_version_downloads_as_onnx_in_a_zip_built_once(client, acme, tweets, settings):
    response = client.get("/v1/models/tweets:1/export?format=onnx", headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="tweets-v1-onnx.zip"'
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == [f"tweets-v1-onnx/{name}" for name in ONNX_FILES]

    cache = settings.home / "cache" / "exports" / tweets.artifact_path
    assert sorted(p.name for p in cache.iterdir()) == ["onnx.zip"]  # nothing half-written left beside it
    built = cache.joinpath("onnx.zip").stat().st_mtime_ns
    again = client.get("/v1/models/tweets@latest/export?format=onnx", headers=acme.headers)
    assert again.content == response.content and cache.joinpath("onnx.zip").stat().st_mtime_ns == built

    packed = client.get("/v1/models/tweets/export?format=onnx&archive=tar.gz", headers=acme.headers)
    assert packed.status_code == 200 and packed.headers["content-type"] == "application/gzip"
    assert packed.headers["content-disposition"] == 'attachment; filename="tweets-v1-onnx.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(packed.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == [f"tweets-v1-onnx/{name}" for name in ONNX_FILES]
    assert sorted(p.name for p in cache.iterdir()) == ["onnx.tar.gz", "onnx.zip"]


@pytest.mark.parametrize("fmt, message", [
    ("hf", "format 'hf' is not available for tweets:1 (a classify version trained with method head); formats: onnx"),
    ("gguf", "format 'gguf' is not available for tweets:1 (a classify version trained with method head); "
             "formats: onnx"),
])
def test_a_format_the_version_lacks_is_a_400_naming_format(client, acme, tweets, settings, fmt, message):
    error = error_of(client.get(f"/v1/models/tweets:1/export?format={fmt}", headers=acme.headers), 400)
    assert (error["param"], error["message"], error["code"]) == ("format", message, "invalid_format")
    assert not (settings.home / "cache" / "exports").exists()


def test_bad_requests_name_their_parameter(client, acme, tweets):
    unknown = error_of(client.get("/v1/models/tweets/export?format=pickle", headers=acme.headers), 400)
    assert unknown["param"] == "format" and "'hf', 'peft', 'onnx' or 'gguf'" in unknown["message"]
    assert error_of(client.get("/v1/models/tweets/export", headers=acme.headers), 400)["param"] == "format"
    archive = error_of(client.get("/v1/models/tweets/export?format=onnx&archive=rar", headers=acme.headers), 400)
    assert archive["param"] == "archive"
    base = error_of(client.get("/v1/models/minilm-l6/export?format=onnx", headers=acme.headers), 400)
    assert (base["param"], base["message"]) == (
        "model_id", "'minilm-l6' is a base model of the catalog; export a fine-tuned version")


def test_another_tenants_model_is_not_found(client, acme, globex, tweets):
    error = error_of(client.get("/v1/models/tweets/export?format=onnx", headers=globex.headers), 404)
    assert error["message"] == "model 'tweets' not found"
    error_of(client.get("/v1/models/tweets:2/export?format=onnx", headers=acme.headers), 404)


def test_download_names_keep_only_safe_characters():
    from tailor.serve.routes.export import download_name

    assert download_name("ft:minilm-l6:acme:news:ftjob-ab12:3", "hf") == "ft_minilm-l6_acme_news_ftjob-ab12-v3-hf"
    assert download_name("tweets:12", "onnx") == "tweets-v12-onnx"


def test_export_formats_follow_the_task_and_method():
    from tailor.models.export import export_formats

    assert export_formats("classify", "head") == ("onnx",)
    assert export_formats("classify", "full") == ("hf", "onnx")
    assert export_formats("classify", "lora") == ("hf", "peft", "onnx")
    assert export_formats("chat", "lora") == ("hf", "peft", "gguf")
