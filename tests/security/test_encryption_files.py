"""Encryption at rest of the files a model leaves on disk: with a master key, a trained version's artifact, the
checkpoints of an interrupted run, export downloads and chat engines reach the disk only as ciphertext, yet
predicting, resuming, exporting and decoding work as before; a flipped byte is refused naming the artifact;
deleting the tenant leaves neither files nor plaintext views of it. Without a master key nothing changes."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import SecretStr

import tailor
from tailor.cli import main
from tailor.errors import TailorError
from tailor.registry.artifacts import MARKER as ARTIFACT_MARKER, ArtifactStore, sealed_view_of, view_dirs
from tailor.registry.service import load_classifier, open_registry
from tailor.security.crypto import DecryptionError, open_keyring
from tailor.settings import Settings
from tailor.train.checkpoint import TENANT_FILE, Checkpointer
from tailor.train.progress import RecordingReporter

from api_helpers import csv_bytes, new_master_key, publish_copy
from samples import sample_rows

WORD = "ZanzibarQuill5512"
LABELS = {"bearish": "LabelGrumbo", "neutral": "LabelMiddo", "bullish": "LabelHappo"}  # not vocabulary words
ROWS = [(f"{text} {WORD}", LABELS[label]) for text, label in sample_rows(per_label=12)]
NEEDLES = [WORD.encode(), *(label.encode() for label in LABELS.values())]
TLRENC = b"TLRENC"


class _Crash(RecordingReporter):
    """Interrupts training after its first epoch's checkpoint is written."""

    def metrics(self, step, data):
        super().metrics(step, data)
        if data["epoch"] == 2:
            raise KeyboardInterrupt("simulated crash")


def _env(monkeypatch, settings: Settings, key: str) -> None:
    """The CLI verbs read the same settings from the environment."""
    monkeypatch.setenv("TAILOR_HOME", str(settings.home))
    monkeypatch.setenv("TAILOR_DATABASE_URL", settings.registry_url)
    monkeypatch.setenv("TAILOR_MASTER_KEY", key)


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {needle.decode()}" for needle in needles if needle in data]
    return found


def _own_workspaces() -> list[Path]:
    return sorted(Path("/dev/shm").glob(f"tailor-plain-{os.getpid()}-*"))


def _views_of(artifacts_dir: Path) -> list[Path]:
    """This process's plaintext views of the artifacts under ``artifacts_dir`` (other tests hold theirs)."""
    return [view for view in view_dirs() if sealed_view_of(view).origin.is_relative_to(artifacts_dir)]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A LoRA classifier of tenant acme (LoRA: the head method writes no checkpoints) trained with a master key:
    interrupted after epoch 1 (its run folder's files are noted then), resumed to the end.
    ``SimpleNamespace(settings, key, secret, result, interrupted)``; ``secret`` is acme's admin key."""
    from tailor.security.keys import TenantStore

    home = tmp_path_factory.mktemp("sealed-home")
    key = new_master_key()
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tailor.db'}", master_key=SecretStr(key))
    _, secret = TenantStore(settings.registry_url).create_tenant("acme")
    data = tmp_path_factory.mktemp("sealed-data") / "loans.csv"  # outside the storage root
    data.write_bytes(csv_bytes(ROWS))
    args = dict(name="loans", tenant="acme", method="lora", epochs=2, batch_size=16, seed=0, settings=settings)
    with pytest.raises(KeyboardInterrupt):
        tailor.fine_tune(data, reporter=_Crash(), **args)
    interrupted = {str(p.relative_to(home)): p.read_bytes() for p in sorted((home / "runs").rglob("*")) if p.is_file()}
    result = tailor.fine_tune(data, resume=True, **args)
    return SimpleNamespace(settings=settings, key=key, secret=secret, result=result, interrupted=interrupted)


def test_an_interrupted_runs_checkpoints_are_sealed_and_resume(sealed):
    names = sorted(sealed.interrupted)
    run = Path(names[0]).parts[:2]
    assert names == [f"{run[0]}/{run[1]}/checkpoints/best.pt", f"{run[0]}/{run[1]}/checkpoints/last.pt",
                     f"{run[0]}/{run[1]}/{TENANT_FILE}"]
    assert run[1].startswith("run-") and sealed.interrupted[names[2]] == b"acme\n"
    assert [sealed.interrupted[name][:6] for name in names[:2]] == [TLRENC, TLRENC]
    assert not any(needle in blob for blob in sealed.interrupted.values() for needle in NEEDLES)
    assert sealed.result.version.lineage["resumed_from_epoch"] == 1
    assert [row["epoch"] for row in sealed.result.history] == [1, 2]
    assert not (sealed.settings.home / "runs").exists() or list((sealed.settings.home / "runs").iterdir()) == []


def test_every_artifact_file_is_ciphertext_and_no_plaintext_is_on_disk(sealed):
    registry = open_registry(sealed.settings)
    version = sealed.result.version
    location = registry.artifact_location(version)
    assert location.parent.parent == sealed.settings.artifacts_dir / "acme"
    marker = json.loads((location / ARTIFACT_MARKER).read_text())
    key_id = open_keyring(sealed.settings.registry_url, sealed.settings).data_key("acme").id
    assert marker["sealed"] == {"tenant": "acme", "key": key_id}
    files = sorted(p for p in location.rglob("*") if p.is_file() and p.name != ARTIFACT_MARKER)
    assert sorted(p.relative_to(location).as_posix() for p in files) == sorted(marker["files"])
    assert {"adapter/adapter_model.safetensors", "tailor_model.json", "metrics.json"} <= set(marker["files"])
    assert [p.name for p in files if p.read_bytes()[:6] != TLRENC] == []
    registry.artifacts.verify(version.artifact_path)  # the marker's digests are the ciphertexts'
    view = registry.artifact_dir(version)  # decrypts: the plaintext lives in memory only
    assert view.parent == Path("/dev/shm").resolve() and view in view_dirs()
    assert json.loads((view / "tailor_model.json").read_text())["labels"] == sorted(LABELS.values())
    home = sealed.settings.home
    assert [hit for sub in ("artifacts", "runs", "cache") for hit in _files_holding(home / sub, NEEDLES)] == []


def test_predictions_of_the_sealed_version_match_its_plaintext(sealed, tmp_path):
    from tailor.models.classifier import TextClassifier

    texts = [f"profits rose sharply {WORD}", "the bank cut its outlook"]
    classifier = load_classifier("loans", tenant="acme", settings=sealed.settings)
    plain = tmp_path / "plain"
    shutil.copytree(open_registry(sealed.settings).artifact_dir(sealed.result.version), plain)
    reference = TextClassifier.from_dir(plain, runtime="served")
    assert classifier.labels == sorted(LABELS.values())
    np.testing.assert_array_equal(classifier.predict_proba(texts), reference.predict_proba(texts))


def test_models_show_prints_the_on_disk_directory(sealed, monkeypatch, capsys):
    _env(monkeypatch, sealed.settings, sealed.key)
    assert main(["models", "show", "loans", "--tenant", "acme", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["artifact_dir"] == str(open_registry(sealed.settings).artifact_location(sealed.result.version))


def test_exports_of_a_sealed_version(sealed, monkeypatch, capsys, tmp_path):
    from fastapi.testclient import TestClient
    from transformers import AutoModelForSequenceClassification

    from tailor.serve.app import create_app

    _env(monkeypatch, sealed.settings, sealed.key)
    out = tmp_path / "hf"
    # an export to a directory the user names is their explicit request for the plaintext
    assert main(["models", "export", "loans", "--tenant", "acme", "--format", "hf", "--out", str(out)]) == 0
    capsys.readouterr()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert sorted(model.config.id2label.values()) == sorted(LABELS.values())
    with TestClient(create_app(sealed.settings), raise_server_exceptions=False) as client:
        got = client.get("/v1/models/loans/export", params={"format": "peft"},
                         headers={"Authorization": f"Bearer {sealed.secret}"})
        assert got.status_code == 200, got.text
    packed = zipfile.ZipFile(io.BytesIO(got.content))
    view = open_registry(sealed.settings).artifact_dir(sealed.result.version)
    assert (packed.read("loans-v1-peft/adapter_model.safetensors")
            == (view / "adapter" / "adapter_model.safetensors").read_bytes())
    assert not (sealed.settings.home / "cache" / "exports").exists()  # built in memory, never cached
    assert set(_own_workspaces()) <= set(view_dirs())  # the download's workspace went with the response


def test_a_flipped_byte_is_refused_naming_the_artifact(sealed, monkeypatch, capsys):
    registry = open_registry(sealed.settings)
    source = registry.artifact_dir(sealed.result.version)
    copy = publish_copy(sealed.settings, (source, sealed.result.version), "acme", "tampered")
    spec = registry.artifact_location(copy) / "tailor_model.json"
    blob = bytearray(spec.read_bytes())
    blob[-20] ^= 1
    spec.write_bytes(bytes(blob))
    with pytest.raises(TailorError, match=f"^artifact {copy.artifact_path} failed verification "
                                          r"\(modified: tailor_model.json\)$"):
        registry.artifacts.verify(copy.artifact_path)
    _env(monkeypatch, sealed.settings, sealed.key)
    assert main(["predict", "tampered", "profits rose", "--tenant", "acme"]) == 1
    assert capsys.readouterr().err == (
        f"error: artifact {copy.artifact_path}: tailor_model.json cannot be decrypted: an encrypted file of tenant "
        "'acme' was altered: chunk 0 does not decrypt (changed, moved or swapped)\n")
    assert [p for p in _own_workspaces() if p not in view_dirs()] == []  # the failed view left nothing


def test_deleting_the_tenant_leaves_no_file_and_no_view(sealed, monkeypatch, capsys):
    home = sealed.settings.home
    open_registry(sealed.settings).artifact_dir(sealed.result.version)  # a view is held in this process
    assert len(_views_of(sealed.settings.artifacts_dir)) == 1
    leftover = home / "runs" / "run-0123456789ab"  # an interrupted command-line run of acme
    keyring = open_keyring(sealed.settings.registry_url, sealed.settings)
    Checkpointer(leftover, keyring=keyring, tenant="acme").save_epoch({"epoch": 1})
    other = home / "runs" / "run-ba9876543210"
    Checkpointer(other, tenant="globex").save_epoch({"epoch": 1})
    _env(monkeypatch, sealed.settings, sealed.key)
    capsys.readouterr()
    assert main(["tenants", "delete", "acme", "--yes", "--json"]) == 0
    erased = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "loans:1" in erased["models"]
    assert str(leftover) in erased["paths"] and str(sealed.settings.artifacts_dir / "acme") in erased["paths"]
    assert not leftover.exists() and (other / TENANT_FILE).read_text() == "globex\n"
    assert _views_of(sealed.settings.artifacts_dir) == [] and set(_own_workspaces()) <= set(view_dirs())
    assert not (sealed.settings.artifacts_dir / "acme").exists()
    # neither its data nor its name is left in its files (the database is checked elsewhere)
    needles = NEEDLES + [b"acme"]
    assert [hit for sub in ("artifacts", "runs", "cache") for hit in _files_holding(home / sub, needles)] == []


# ----------------------------------------------------------------------------------------------- chat engines


def test_a_sealed_chat_versions_engine_is_ciphertext_in_the_cache(tmp_path, monkeypatch):
    from tiny_chat import build_tiny_chat_model, review_conversations, write_jsonl

    from tailor.models.causal import load_chat_model
    from tailor.models.genai import EngineChatModel, drop_engine_views, load_fast_chat_model
    from tailor.train.chat_job import run_chat_job

    key = new_master_key()
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'tailor.db'}",
                        master_key=SecretStr(key))
    tiny = build_tiny_chat_model(tmp_path / "tiny-llama")
    data = write_jsonl(tmp_path / "reviews.jsonl", review_conversations(40))
    result = run_chat_job(data, name="reviews", settings=settings, base=str(tiny), epochs=1, batch_size=4,
                          grad_accum=1, max_length=64, lr=1e-2, samples=1, sample_max_tokens=4, eval_examples=4)
    chat = load_fast_chat_model("reviews", settings=settings, precision="fp32")
    assert isinstance(chat, EngineChatModel) and chat.engine_dir.is_relative_to(Path("/dev/shm").resolve())
    engines = sorted((settings.home / "cache" / "genai").iterdir())  # the job built the int8 one
    stem = f"reviews-{Path(result.version.artifact_path).name[:8]}"
    assert [e.name.split("-")[:3] for e in engines] == [[*stem.split("-"), "fp32"], [*stem.split("-"), "int8"]]
    for engine in engines:
        listed = json.loads((engine / "TAILOR_CONVERTED.json").read_text())["files"]
        assert "model.onnx" in listed and all((engine / name).read_bytes()[:6] == TLRENC for name in listed)
        assert sorted(p.name for p in engine.iterdir()) == sorted([*listed, "TAILOR_CONVERTED.json"])
    cached = engines[0]
    review = [{"role": "user", "content": "the lamp is good and fine"}]
    torch_chat = load_chat_model("reviews", settings=settings, merge=True)
    prompt = torch_chat.prompt_ids(review)
    greedy = list(torch_chat._sample_tokens(prompt, 8, 0.0, 1.0, None))
    assert list(chat._sample_tokens(prompt, 8, 0.0, 1.0, None)) == greedy
    assert drop_engine_views([cached]) == 1  # as in a new process: decrypted from the cache, not rebuilt
    progress = RecordingReporter()
    again = load_fast_chat_model("reviews", settings=settings, precision="fp32", progress=progress)
    assert progress.messages == [] and again.engine_dir != chat.engine_dir
    assert list(again._sample_tokens(prompt, 8, 0.0, 1.0, None)) == greedy
    assert _files_holding(settings.home / "cache", [b"the lamp"]) == []


# ----------------------------------------------------------------------------------------------- without a key


def test_without_a_master_key_artifacts_and_checkpoints_stay_plaintext(tmp_path):
    import torch

    store = ArtifactStore(tmp_path / "artifacts")
    with store.stage() as staged:
        assert staged.parent == tmp_path / "artifacts" / ".staging"
        (staged / "weights.bin").write_bytes(b"plain weights")
        store.publish(staged, "acme/m/1")
    assert store.path_for("acme/m/1") == store.location("acme/m/1") == tmp_path / "artifacts" / "acme" / "m" / "1"
    assert (store.path_for("acme/m/1") / "weights.bin").read_bytes() == b"plain weights"
    assert "sealed" not in json.loads((store.location("acme/m/1") / ARTIFACT_MARKER).read_text())
    checkpointer = Checkpointer(tmp_path / "run", tenant="acme")
    checkpointer.save_epoch({"epoch": 3, "weights": torch.ones(2)})
    raw = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    assert raw[:6] != TLRENC and torch.load(io.BytesIO(raw), weights_only=False)["epoch"] == 3
    last, best = checkpointer.load()
    assert last["epoch"] == 3 and best == {}
    checkpointer.clear()
    assert not (tmp_path / "run").exists()


def test_a_sealed_artifact_and_checkpoint_need_their_key(tmp_path, db_url):
    key = new_master_key()
    settings = Settings(home=tmp_path / "home", database_url=db_url, master_key=SecretStr(key))
    keyring = open_keyring(db_url, settings)
    sealed_store = ArtifactStore(tmp_path / "artifacts", keyring=keyring)
    with sealed_store.stage() as staged:
        assert staged.is_relative_to(Path("/dev/shm"))
        (staged / "sub").mkdir()
        (staged / "sub" / "weights.bin").write_bytes(b"secret weights" * 100_000)  # two chunks
        sealed_store.publish(staged, "acme/m/1")
    assert not staged.exists() and list((tmp_path / "artifacts" / ".staging").iterdir()) == []
    on_disk = sealed_store.location("acme/m/1") / "sub" / "weights.bin"
    assert on_disk.read_bytes()[:6] == TLRENC and b"secret weights" not in on_disk.read_bytes()
    view = sealed_store.path_for("acme/m/1")
    assert (view / "sub" / "weights.bin").read_bytes() == b"secret weights" * 100_000
    assert sealed_store.path_for("acme/m/1") == view  # decrypted once per process
    with pytest.raises(TailorError, match="^artifact acme/m/1 already exists$"):
        with sealed_store.stage() as staged:
            sealed_store.publish(staged, "acme/m/1")
    assert not staged.exists()
    with pytest.raises(TailorError, match=r"^artifact acme/m/1 is encrypted but no master key is configured "):
        ArtifactStore(tmp_path / "artifacts").path_for("acme/m/1")
    sealed_store.remove("acme/m/1")
    assert not view.exists() and view not in view_dirs() and not (tmp_path / "artifacts" / "acme" / "m" / "1").exists()

    run = tmp_path / "run"
    Checkpointer(run, keyring=keyring, tenant="acme").save_epoch({"epoch": 1, "note": "secret weights"})
    assert (run / "checkpoints" / "last.pt").read_bytes()[:6] == TLRENC
    assert b"secret weights" not in (run / "checkpoints" / "last.pt").read_bytes()
    assert Checkpointer(run, keyring=keyring, tenant="acme").load() == ({"epoch": 1, "note": "secret weights"}, {})
    with pytest.raises(DecryptionError, match="of tenant 'globex' does not exist"):  # sealed for acme
        Checkpointer(run, keyring=keyring, tenant="globex").load()
    with pytest.raises(DecryptionError, match="is encrypted but no master key is configured$"):
        Checkpointer(run).load()
