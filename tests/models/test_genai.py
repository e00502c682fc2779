"""The onnxruntime-genai decode engine: the same tokens as PyTorch at fp32, ChatModel's streaming, stops, usage
and seeds on the default engine, the engine cache, fine-tuned versions, and the explicit PyTorch fallback."""

import json
import logging
import re
import shutil
import sys
from pathlib import Path

import pytest

from tailor.models import conversion
from tailor.models.causal import ChatModel, load_chat_model
from tailor.models.genai import (DEFAULT_PRECISION, EngineChatModel, build_engine,
                                 check_engine, engine_dir_for, ensure_engine, load_fast_chat_model, source_seal)
from tailor.settings import Settings
from tailor.train.progress import RecordingReporter
from tiny_chat import SYSTEM, build_tiny_chat_model, review_conversations, write_jsonl

BASE = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is diabetes?"}]
REVIEW = [{"role": "user", "content": "the lamp is good and fine"}]
ENGINE_FILES = ["TAILOR_CONVERTED.json", "chat_template.jinja", "engine.json", "genai_config.json", "model.onnx",
                "model.onnx.data", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture(scope="module")
def engine_settings(tmp_path_factory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("genai-home"))


@pytest.fixture(scope="module")
def fast_chat(engine_settings) -> EngineChatModel:
    """SmolLM2 on the default (int8) engine, built once for this file."""
    return load_fast_chat_model(BASE, settings=engine_settings)


@pytest.fixture(scope="module")
def torch_chat() -> ChatModel:
    return load_chat_model(BASE)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def registered(tiny_dir, tmp_path_factory):
    """A tiny chat version (LoRA on the tiny Llama, with a system prompt) registered in its own storage root:
    ``(settings, artifact_dir)``."""
    from tailor.registry.service import open_registry
    from tailor.train.chat_job import run_chat_job

    root = tmp_path_factory.mktemp("genai-version")
    settings = Settings(home=root / "home")
    data = write_jsonl(root / "reviews.jsonl", review_conversations(40))
    result = run_chat_job(data, name="reviews", settings=settings, base=str(tiny_dir), epochs=1, batch_size=4,
                          grad_accum=1, max_length=64, lr=1e-2, samples=1, sample_max_tokens=4, eval_examples=4)
    return settings, open_registry(settings).artifact_dir(result.version)


def _tiny_gpt2_dir(directory: Path) -> Path:
    """A chat model whose architecture (GPT-2) onnxruntime-genai's builder does not export."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    build_tiny_chat_model(directory)
    (directory / "model.safetensors").unlink()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(str(directory))
    return directory


# ----------------------------------------------------------------------------------------------- SmolLM2


def test_an_fp32_engine_decodes_the_same_greedy_tokens_as_pytorch(engine_settings, torch_chat):
    """The wiring proof: same prompt ids, same greedy tokens (and text) as the PyTorch ChatModel."""
    chat = load_fast_chat_model(BASE, settings=engine_settings, precision="fp32")
    assert isinstance(chat, EngineChatModel) and (chat.precision, chat.name, chat.version) == ("fp32", BASE, None)
    assert chat.model is None and chat.max_length == torch_chat.max_length == 8192
    prompt = torch_chat.prompt_ids(QUESTION)
    assert chat.prompt_ids(QUESTION) == prompt and len(prompt) == 34
    assert chat._end_ids() == torch_chat._end_ids() == {2}
    ours = list(chat._sample_tokens(prompt, 20, 0.0, 1.0, None))
    assert len(ours) == 20 and ours == list(torch_chat._sample_tokens(prompt, 20, 0.0, 1.0, None))
    assert chat.generate(QUESTION, max_tokens=20) == torch_chat.generate(QUESTION, max_tokens=20)


def test_the_engine_streams_stops_and_counts_like_chat_model(fast_chat):
    assert fast_chat.precision == DEFAULT_PRECISION == "int8"
    whole = fast_chat.generate(QUESTION, max_tokens=24)
    assert (whole.prompt_tokens, whole.completion_tokens, whole.finish_reason) == (34, 24, "length")
    assert whole.text.startswith("Diabetes")
    usage: dict = {}
    pieces = list(fast_chat.stream(QUESTION, max_tokens=24, usage=usage))
    assert len(pieces) >= 10 and "".join(pieces) == whole.text
    assert usage == {"prompt_tokens": 34, "completion_tokens": 24, "finish_reason": "length"}
    stop = whole.text.split()[3]
    cut = fast_chat.generate(QUESTION, max_tokens=24, stop=[stop])
    assert (cut.text, cut.finish_reason) == (whole.text[:whole.text.find(stop)], "stop")
    assert "".join(fast_chat.stream(QUESTION, max_tokens=24, stop=[stop])) == cut.text
    short = fast_chat.generate([{"role": "user", "content": "Say just the word yes."}], max_tokens=40)
    assert short.finish_reason == "stop" and short.completion_tokens < 40  # the end-of-turn token is counted
    text = fast_chat.stream_ids(fast_chat.text_prompt_ids("The capital of France is"), max_tokens=6, usage=usage)
    assert "Paris" in "".join(text) and usage["prompt_tokens"] == 5 and usage["completion_tokens"] == 6


def test_seeded_sampling_repeats_and_seeds_differ(fast_chat):
    sample = [fast_chat.generate(QUESTION, max_tokens=16, temperature=1.0, top_p=0.9, seed=seed).text
              for seed in (5, 5, 6)]
    assert sample[0] == sample[1] and sample[0] != sample[2]
    assert fast_chat._search_options(34, 16, 0.7, 0.9, None) == {
        "max_length": 50, "batch_size": 1, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 49152,
        "random_seed": -1}
    assert fast_chat._search_options(8190, 16, 0.0, 1.0, None) == {"max_length": 8192, "batch_size": 1,
                                                                   "do_sample": False}


def test_the_engine_build_prints_nothing_and_leaves_logging_alone(fast_chat, engine_settings, capfd):
    """The builder's progress bars and its ``logging.basicConfig`` stay in the child process."""
    handlers, level = list(logging.getLogger().handlers), logging.getLogger().level
    capfd.readouterr()
    load_fast_chat_model(BASE, settings=engine_settings, precision="int4")
    assert capfd.readouterr() == ("", "")
    assert (logging.getLogger().handlers, logging.getLogger().level) == (handlers, level)
    assert "onnxruntime_genai.models.builder" not in sys.modules
    engine_dir = next((engine_settings.home / "cache" / "genai").glob(f"{BASE}-int4-*"))
    assert sorted(p.name for p in engine_dir.iterdir()) == ENGINE_FILES
    record = json.loads((engine_dir / "engine.json").read_text())
    assert (record["precision"], Path(record["source"]).name) == ("int4", BASE)


# ----------------------------------------------------------------------------------------------- the cache


def test_the_engine_cache_is_reused_and_a_broken_one_rebuilt(tiny_dir, tmp_path):
    root = tmp_path / "genai"
    progress = RecordingReporter()
    engine_dir = ensure_engine(tiny_dir, root, "fp32", progress)
    assert engine_dir == engine_dir_for(tiny_dir, root, "fp32") and engine_dir.parent == root.resolve()
    assert engine_dir.name.startswith(f"{tiny_dir.name}-fp32-") and len(progress.messages) == 2
    assert sorted(p.name for p in root.iterdir()) == [engine_dir.name]  # no temporaries left
    assert check_engine(engine_dir, tiny_dir, "fp32", full=True) is None
    built = (engine_dir / "model.onnx").stat().st_mtime_ns

    again = RecordingReporter()
    assert ensure_engine(str(tiny_dir), root, "fp32", again) == engine_dir and again.messages == []
    assert (engine_dir / "model.onnx").stat().st_mtime_ns == built

    (engine_dir / conversion.MARKER).unlink()
    redo = RecordingReporter()
    assert ensure_engine(tiny_dir, root, "fp32", redo) == engine_dir
    assert redo.messages[0][0] == (f"redoing the {engine_dir.name} conversion in {engine_dir}: "
                                   "TAILOR_CONVERTED.json is missing or unreadable")
    assert check_engine(engine_dir, tiny_dir, "fp32") is None
    assert (engine_dir / "model.onnx").stat().st_mtime_ns != built


def test_progress_hears_a_build_before_it_starts_and_nothing_once_it_is_built(tiny_dir, tmp_path):
    """What the server's model cache relies on to answer 503 during a build instead of waiting silently."""
    settings = Settings(home=tmp_path / "home")
    first = RecordingReporter()
    chat = load_fast_chat_model(str(tiny_dir), settings=settings, progress=first)
    (building, source), (ready, _) = first.messages
    assert building == (f"building the int8 onnxruntime-genai engine of {tiny_dir.name} into {chat.engine_dir} "
                        "(once)") and source == {"source": str(tiny_dir.resolve())}
    assert re.fullmatch(rf"engine {re.escape(chat.engine_dir.name)} ready in \d+\.\ds", ready)
    again = RecordingReporter()
    assert load_fast_chat_model(str(tiny_dir), settings=settings, progress=again).engine_dir == chat.engine_dir
    assert again.messages == []


def test_the_cache_key_follows_the_source_and_a_failed_build_leaves_nothing(tiny_dir, tmp_path):
    copy = shutil.copytree(tiny_dir, tmp_path / tiny_dir.name)
    root = tmp_path / "genai"
    assert source_seal(copy) == copy / "model.safetensors"
    assert engine_dir_for(copy, root, "int8") != engine_dir_for(tiny_dir, root, "int8")  # another path
    assert engine_dir_for(copy, root, "int8") != engine_dir_for(copy, root, "int4")
    before = engine_dir_for(copy, root, "int8")
    (copy / conversion.MARKER).write_text("{}")  # a sealed directory is keyed by its seal
    assert source_seal(copy) == copy / conversion.MARKER and engine_dir_for(copy, root, "int8") != before
    (copy / "config.json").write_text("{")
    with pytest.raises(Exception, match="^building the onnxruntime-genai engine of .* failed: "):
        build_engine(copy, root / "broken", "int8")
    assert not root.exists() or list(root.iterdir()) == []


# ----------------------------------------------------------------------------------------------- versions


def test_a_registered_version_is_built_from_its_merged_weights(registered):
    settings, artifact = registered
    chat = load_fast_chat_model("reviews@latest", settings=settings, precision="fp32")
    assert isinstance(chat, EngineChatModel)
    assert (chat.name, chat.version.ref, chat.system_prompt) == ("reviews:1", "reviews:1", SYSTEM)
    assert source_seal(artifact) == artifact / "TAILOR_COMPLETE.json"
    assert chat.engine_dir == engine_dir_for(artifact, settings.home / "cache" / "genai", "fp32")
    assert chat.engine_dir.name.startswith(f"reviews-{artifact.name[:8]}-fp32-")
    record = json.loads((chat.engine_dir / "engine.json").read_text())
    assert (record["source"], record["seal"]) == (str(artifact), str(artifact / "TAILOR_COMPLETE.json"))
    torch_chat = load_chat_model("reviews@latest", settings=settings, merge=True)
    prompt = torch_chat.prompt_ids(REVIEW)
    assert chat.prompt_ids(REVIEW) == prompt
    assert chat.tokenizer.decode(prompt).startswith(f"<|im_start|>system\n{SYSTEM}")
    greedy = list(chat._sample_tokens(prompt, 8, 0.0, 1.0, None))
    assert len(greedy) == 8 and greedy == list(torch_chat._sample_tokens(prompt, 8, 0.0, 1.0, None))
    assert [p.name for p in chat.engine_dir.parent.iterdir() if ".merge." in p.name] == []  # the merged copy went


# ----------------------------------------------------------------------------------------------- fallback


def test_an_architecture_the_builder_lacks_falls_back_to_pytorch_with_a_warning(tmp_path, caplog):
    gpt2 = _tiny_gpt2_dir(tmp_path / "tiny-gpt2")
    settings = Settings(home=tmp_path / "home")
    with caplog.at_level(logging.WARNING, logger="tailor.models.genai"):
        chat = load_fast_chat_model(str(gpt2), settings=settings)
    assert type(chat) is ChatModel and chat.name == str(gpt2)
    assert [r.getMessage() for r in caplog.records] == [
        f"decoding {gpt2} with PyTorch (slower): onnxruntime-genai cannot build this model: its builder has no "
        "exporter for GPT2LMHeadModel"]
    assert list((settings.home / "cache" / "genai").iterdir()) == []
    assert chat.generate(REVIEW, max_tokens=3).completion_tokens <= 3


def test_without_onnxruntime_genai_chat_falls_back_to_pytorch(tiny_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="tailor.models.genai"):
        chat = load_fast_chat_model(str(tiny_dir), settings=Settings(home=tmp_path / "home"))
    assert type(chat) is ChatModel
    assert [r.getMessage().split(" (import of")[0] for r in caplog.records] == [
        f"decoding {tiny_dir} with PyTorch (slower): onnxruntime-genai is not available"]
    assert not (tmp_path / "home" / "cache" / "genai").exists()


def test_bad_references_are_refused_before_any_build(engine_settings):
    from tailor.errors import NotFoundError, UsageError

    with pytest.raises(UsageError, match="^minilm-l6 is a classify base model, not a chat model$"):
        load_fast_chat_model("minilm-l6", settings=engine_settings)
    with pytest.raises(UsageError, match="^unknown engine precision 'int3': use one of int8, int4, fp32$"):
        load_fast_chat_model(BASE, settings=engine_settings, precision="int3")
    with pytest.raises(NotFoundError):
        load_fast_chat_model("no-such-model", settings=engine_settings)
