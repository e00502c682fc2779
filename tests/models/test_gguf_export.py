"""GGUF export of chat versions: llama.cpp's layout, read back by gguf's reader, transformers and llama.cpp."""

import json
from pathlib import Path

import numpy as np
import pytest

from tailor.errors import UsageError
from tailor.models.gguf_export import (check_llama_config, permute_for_llama_rope, pre_tokenizer_name,
                                       write_llama_gguf)
from tiny_chat import CHATML, build_tiny_chat_model, review_conversations, write_jsonl

PROMPT = [{"role": "user", "content": "the lamp is good and fine, 12 out of 10"}]
# the largest |logit difference| allowed, as a fraction of the largest |logit| (measured on the tiny model:
# f32 0, f16 0.0027, q8_0 0.069; its random weights, initializer_range 0.2, make rounding errors large)
TOLERANCE = {"f32": 1e-6, "f16": 1e-2, "q8_0": 0.15}


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory) -> Path:
    """A chat version of the tiny Llama trained for one epoch (its LoRA is non-zero)."""
    from tailor.registry.service import open_registry
    from tailor.settings import Settings
    from tailor.train.chat_job import run_chat_job

    root = tmp_path_factory.mktemp("gguf-home")
    base = build_tiny_chat_model(root / "tiny-llama")
    settings = Settings(home=root / "home")
    data = write_jsonl(root / "reviews.jsonl", review_conversations(40))
    result = run_chat_job(data, name="reviews", settings=settings, base=str(base), epochs=1, batch_size=4,
                          grad_accum=1, max_length=64, lr=1e-2, samples=1, sample_max_tokens=4, eval_examples=4)
    return open_registry(settings).artifact_dir(result.version)


@pytest.fixture(scope="module")
def merged_dir(tiny_artifact, tmp_path_factory) -> Path:
    """The same version exported as a plain Hugging Face directory (the reference for the GGUF files)."""
    from tailor.models.export import export_artifact

    out = tmp_path_factory.mktemp("merged") / "hf"
    export_artifact(tiny_artifact, "hf", out)
    return out


@pytest.fixture(scope="module")
def gguf_dir(tiny_artifact, tmp_path_factory) -> Path:
    """The version exported with ``--format gguf`` (f16)."""
    from tailor.models.export import export_artifact

    out = tmp_path_factory.mktemp("gguf") / "out"
    assert export_artifact(tiny_artifact, "gguf", out) == ["README.md", "model.gguf"]
    return out


def _fields(path: Path) -> dict:
    """Every metadata key of a GGUF file with its value (arrays as lists)."""
    from gguf import GGUFReader

    return {key: field.contents() for key, field in GGUFReader(str(path)).fields.items()}


def _relative_diff(got, expected) -> float:
    """The largest |logit difference| as a fraction of the largest |logit|."""
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()


def _prompt_ids(directory: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False)


def _load_gguf_model(directory: Path, name: str = "model.gguf"):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=name, dtype=torch.float32).eval()


# ----------------------------------------------------------------------------------------------- pieces


def test_the_rope_permutation_interleaves_the_two_halves_of_each_head():
    rows = np.arange(16).reshape(8, 2)  # 2 heads of head_dim 4, 2 input columns
    permuted = permute_for_llama_rope(rows, n_heads=2)
    assert permuted[:, 0].tolist() == [0, 4, 2, 6, 8, 12, 10, 14]
    assert permuted[:, 1].tolist() == [1, 5, 3, 7, 9, 13, 11, 15]
    assert permute_for_llama_rope(np.arange(8), n_heads=1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_pre_tokenizers_map_to_llama_cpp_names_and_others_are_refused():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_name({"pre_tokenizer": smollm}) == "smollm"
    grouped = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, byte_level]}
    with pytest.raises(UsageError, match=r"^--format gguf: no llama.cpp pre-tokenizer matches this tokenizer's "
                                         r"\['Digits', 'ByteLevel'\]$"):
        pre_tokenizer_name({"pre_tokenizer": grouped})
    with pytest.raises(UsageError, match=r"\['Metaspace'\]$"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}})


def test_non_llama_configs_rope_scaling_and_unknown_dtypes_are_refused(merged_dir, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    with pytest.raises(UsageError, match=r"^--format gguf supports Llama models; this one is qwen2 "
                                         r"\['Qwen2ForCausalLM'\]$"):
        check_llama_config(SimpleNamespace(model_type="qwen2", architectures=["Qwen2ForCausalLM"]))
    with pytest.raises(UsageError, match=r"^--format gguf does not support RoPE scaling \(llama3\)$"):
        check_llama_config(SimpleNamespace(model_type="llama", architectures=["LlamaForCausalLM"],
                                           rope_parameters={"rope_type": "llama3", "factor": 8.0}))
    with pytest.raises(UsageError, match=r"^unknown GGUF dtype 'q4_0'; choose one of: f16, f32, q8_0$"):
        write_llama_gguf(merged_dir, AutoTokenizer.from_pretrained(str(merged_dir)), tmp_path / "x.gguf", "q4_0")
    assert not (tmp_path / "x.gguf").exists()


# ----------------------------------------------------------------------------------------------- the file


def test_the_gguf_has_llamas_metadata_and_tokenizer(gguf_dir, merged_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    config = json.loads((merged_dir / "config.json").read_text())
    tokenizer_json = json.loads((merged_dir / "tokenizer.json").read_text())
    vocab = config["vocab_size"]
    fields = _fields(gguf_dir / "model.gguf")
    tokens, types, merges = (fields.pop(k) for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                                     "tokenizer.ggml.merges"))
    assert fields.pop("general.name").endswith("tiny-llama (Tailor LoRA, merged)")
    assert fields.pop("llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert fields == {
        "GGUF.version": 3, "GGUF.tensor_count": 20, "GGUF.kv_count": 25,
        "general.architecture": "llama", "general.file_type": 1, "general.quantization_version": 2,
        "llama.context_length": 512, "llama.embedding_length": 64, "llama.block_count": 2,
        "llama.feed_forward_length": 128, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "llama.rope.freq_base": 10000.0, "llama.rope.dimension_count": 16, "llama.vocab_size": vocab,
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.padding_token_id": 2, "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": CHATML,
    }
    assert len(tokens) == len(types) == vocab == len(tokenizer)
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] and types[:3] == [3, 3, 3]
    assert set(types[3:]) == {1} and tokens[3:] == [tokenizer.convert_ids_to_tokens(i) for i in range(3, vocab)]
    assert merges == [" ".join(m) for m in tokenizer_json["model"]["merges"]] and len(merges) > 100


def test_the_gguf_has_llama_cpps_tensor_names_shapes_and_types_without_a_tied_output(gguf_dir, merged_dir):
    from gguf import GGUFReader

    vocab = json.loads((merged_dir / "config.json").read_text())["vocab_size"]
    tensors = {t.name: (t.shape.tolist(), t.tensor_type.name) for t in GGUFReader(str(gguf_dir / "model.gguf")).tensors}
    expected = {"token_embd.weight": ([64, vocab], "F16"), "output_norm.weight": ([64], "F32")}
    for i in range(2):
        expected |= {f"blk.{i}.attn_norm.weight": ([64], "F32"), f"blk.{i}.ffn_norm.weight": ([64], "F32"),
                     f"blk.{i}.attn_q.weight": ([64, 64], "F16"), f"blk.{i}.attn_k.weight": ([64, 32], "F16"),
                     f"blk.{i}.attn_v.weight": ([64, 32], "F16"), f"blk.{i}.attn_output.weight": ([64, 64], "F16"),
                     f"blk.{i}.ffn_gate.weight": ([64, 128], "F16"), f"blk.{i}.ffn_up.weight": ([64, 128], "F16"),
                     f"blk.{i}.ffn_down.weight": ([128, 64], "F16")}
    assert tensors == expected
    assert "output.weight" not in tensors


def test_the_readme_says_how_to_run_it(gguf_dir):
    readme = (gguf_dir / "README.md").read_text()
    assert readme.startswith("# ") and "llama-cli -m model.gguf -cnv" in readme and "(f16)" in readme


# ----------------------------------------------------------------------------------------------- read back


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_transformers_reads_the_gguf_back_with_the_merged_models_logits(merged_dir, tmp_path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    write_llama_gguf(merged, AutoTokenizer.from_pretrained(str(merged_dir)), tmp_path / "model.gguf", dtype)
    ids = _prompt_ids(merged_dir)
    expected, got = _logits(merged, ids), _logits(_load_gguf_model(tmp_path), ids)
    diff = _relative_diff(got, expected)
    assert diff < TOLERANCE[dtype], f"{dtype}: max |logit diff| / max |logit| = {diff:.2e}"
    assert np.abs(expected).max() > 2.0  # the comparison is not between near-zero logits
    if dtype != "q8_0":
        assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_the_exported_gguf_without_the_permutation_would_not_match(merged_dir, tmp_path, monkeypatch):
    """The Q/K permutation is what makes the logits match: without it, the same read-back is far off."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailor.models import gguf_export

    monkeypatch.setattr(gguf_export, "permute_for_llama_rope", lambda weight, n_heads: weight)
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    write_llama_gguf(merged, AutoTokenizer.from_pretrained(str(merged_dir)), tmp_path / "model.gguf", "f32")
    ids = _prompt_ids(merged_dir)
    assert _relative_diff(_logits(_load_gguf_model(tmp_path), ids), _logits(merged, ids)) > 0.05


def test_transformers_reads_the_gguf_tokenizer_back_with_the_same_ids_and_template(gguf_dir, merged_dir):
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(str(merged_dir))
    restored = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file="model.gguf")
    text = original.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    assert restored(text)["input_ids"] == original(text)["input_ids"]
    assert restored.chat_template == CHATML


def test_gguf_is_a_chat_export_format_and_refuses_a_non_empty_directory(tiny_artifact, tmp_path):
    from tailor.models.export import _exporters_for, export_artifact
    from tailor.models.gguf_export import export_chat_gguf

    assert list(_exporters_for(tiny_artifact)) == ["hf", "peft", "gguf"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_artifact(tiny_artifact, "gguf", tmp_path / "taken")
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_chat_gguf(tiny_artifact, tmp_path / "taken")


def test_llama_cpp_runs_the_exported_gguf_with_the_merged_models_logits(gguf_dir, merged_dir):
    """llama.cpp itself (llama-cpp-python, not a CI dependency) tokenizes like the HF tokenizer and computes the
    same next-token logits: the proof that the names, the permutation and the metadata fit llama.cpp."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    llm = llama_cpp.Llama(model_path=str(gguf_dir / "model.gguf"), n_ctx=128, n_threads=2, logits_all=True,
                          verbose=False)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
    llm.eval(ids)
    got = np.asarray(llm.scores[:len(ids)])
    expected = _logits(AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval(), ids)
    diff = _relative_diff(got, expected)
    assert diff < TOLERANCE["f16"], f"llama.cpp vs merged model: max |logit diff| / max |logit| = {diff:.2e}"


# ----------------------------------------------------------------------------------------------- real SmolLM2


def _random_smollm2_version(directory: Path) -> Path:
    """A chat version of SmolLM2-135M-Instruct whose LoRA (rank 8 on every projection) has random non-zero
    weights: what the export sees of a fine-tune, without the minutes of training."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tailor.catalog import resolve_base
    from tailor.models.causal import ChatSpec, load_causal_lm, save_chat_version

    model, tokenizer = load_causal_lm(resolve_base("smollm2-135m-instruct").path)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.02)
    save_chat_version(peft_model, tokenizer, ChatSpec(base_model="smollm2-135m-instruct", max_length=256), directory)
    return directory


@pytest.mark.slow
def test_a_real_smollm2_version_exports_to_a_gguf_that_transformers_runs_alike(tmp_path):
    """SmolLM2-135M-Instruct with a random LoRA, exported as f16 GGUF and read back by transformers: the same
    greedy next tokens over the prompt, logits within f16 rounding (about 40 s on 2 cores, plus the one-time
    GGUF conversion of the base in the session's storage root)."""
    from transformers import AutoModelForCausalLM

    from tailor.catalog import resolve_base
    from tailor.models.export import export_artifact

    artifact = _random_smollm2_version(tmp_path / "version")
    export_artifact(artifact, "hf", tmp_path / "merged")
    assert export_artifact(artifact, "gguf", tmp_path / "gguf") == ["README.md", "model.gguf"]
    fields = _fields(tmp_path / "gguf" / "model.gguf")
    keys = ("llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
            "llama.rope.dimension_count", "llama.vocab_size", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token")
    assert {k: fields[k] for k in keys} == dict(zip(keys, (30, 8192, 576, 1536, 9, 3, 100000.0, 64, 49152, "gpt-2",
                                                          False)))
    ids = _prompt_ids(tmp_path / "merged")
    expected = _logits(AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval(), ids)
    base = _logits(AutoModelForCausalLM.from_pretrained(resolve_base("smollm2-135m-instruct").path).eval(), ids)
    assert _relative_diff(base, expected) > 0.02  # the adapter changes the model
    got = _logits(_load_gguf_model(tmp_path / "gguf"), ids)
    diff = _relative_diff(got, expected)
    assert diff < TOLERANCE["f16"], f"max |logit diff| / max |logit| = {diff:.2e}"
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.95 and got[-1].argmax() == expected[-1].argmax()
