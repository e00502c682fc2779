"""``tailor models export <chat-model> --format gguf``: a chat version as one GGUF file that llama.cpp runs.

The base and its LoRA adapter are merged, then written with the ``gguf`` package's writer in the layout
llama.cpp's ``convert_hf_to_gguf.py`` gives a ``LlamaForCausalLM``:

* metadata ``general.*`` and ``llama.*`` (context length, sizes, heads, RoPE base and dimensions, RMS-norm
  epsilon, vocabulary size) from the model's config;
* tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q``, ...). The rows of ``q_proj`` and
  ``k_proj`` are permuted from Hugging Face's rotate-half RoPE layout into the interleaved pairs llama.cpp
  rotates; with tied embeddings no ``output.weight`` is written (llama.cpp reuses ``token_embd``);
* norms (and any other 1-D tensor) as F32, matrices as ``f16`` (default), ``f32`` or ``q8_0``;
* the tokenizer as a GPT-2 style byte-level BPE (``tokenizer.ggml.model = "gpt2"``): tokens, token types,
  merges, special-token ids, ``add_bos_token`` and the chat template. ``tokenizer.ggml.pre`` names the
  pre-tokenizer llama.cpp must imitate, read off the tokenizer's own pre-tokenizer (see
  :func:`pre_tokenizer_name`).

``transformers`` reads the file back (``AutoModelForCausalLM.from_pretrained(dir, gguf_file="model.gguf")``
un-permutes Q/K), which is how the tests prove the layout.
"""

from __future__ import annotations

import json
from pathlib import Path

from tailor.errors import UsageError

GGUF_FILE = "model.gguf"
DTYPES = ("f16", "f32", "q8_0")
LLAMA_ARCHITECTURES = ("LlamaForCausalLM",)
# the ``tokenizer.ggml.pre`` names of the pre-tokenizers Tailor recognises, keyed by their tokenizer.json shape
PRE_TOKENIZERS = {
    ("ByteLevel",): "gpt-2",              # the GPT-2 regex only (llama.cpp spells it with a hyphen)
    ("Digits", "ByteLevel"): "smollm",    # every digit apart, then the GPT-2 regex (SmolLM's own tokenizer)
}


def export_chat_gguf(artifact: Path, out: str | Path, dtype: str = "f16") -> list[str]:
    """Write a chat version (base + LoRA merged) as ``out/model.gguf`` plus a README on running it.

    Args:
        artifact: the chat version's directory (``tailor_model.json``, ``adapter/``, ``tokenizer/``).
        out: an empty or missing directory.
        dtype: the type of the 2-D weights: ``f16``, ``f32`` or ``q8_0`` (norms stay F32).

    Returns:
        The file names written, sorted: ``["README.md", "model.gguf"]``.

    Raises:
        UsageError: ``out`` is not empty, an unknown ``dtype``, or a base that llama.cpp's Llama graph cannot run.
    """
    from tailor.models.causal import _check_empty_dir, load_peft_model

    out = Path(out)
    _check_empty_dir(out)
    _check_dtype(dtype)
    model, tokenizer, spec = load_peft_model(Path(artifact))
    merged = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    write_llama_gguf(merged, tokenizer, out / GGUF_FILE, dtype, name=f"{spec.base_model} (Tailor LoRA, merged)")
    (out / "README.md").write_text(_readme(spec.base_model, dtype), encoding="utf-8")
    return sorted(p.name for p in out.iterdir())


def write_llama_gguf(model, tokenizer, path: str | Path, dtype: str = "f16", *, name: str | None = None) -> Path:
    """Write a Llama causal LM and its byte-level BPE tokenizer as one GGUF file.

    Args:
        model: a ``LlamaForCausalLM`` (no adapters) or the directory of one.
        tokenizer: its tokenizer (a fast, ``tokenizers``-backed BPE with a chat template).
        path: the file to write.
        dtype: ``f16``, ``f32`` or ``q8_0`` for the matrices.
        name: ``general.name`` (default: the config's ``_name_or_path``).

    Returns:
        ``path``.

    Raises:
        UsageError: not a Llama, RoPE scaling, an unknown ``dtype``, or a tokenizer that is not byte-level BPE.
    """
    import gguf

    _check_dtype(dtype)
    model = _as_model(model)
    config = model.config
    check_llama_config(config)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        writer.add_name(name or str(getattr(config, "_name_or_path", "") or "llama"))
        add_llama_metadata(writer, config, dtype)
        add_tokenizer_metadata(writer, tokenizer, config.vocab_size)
        for gguf_name, array, raw_type in llama_tensors(model, dtype):
            writer.add_tensor(gguf_name, array, raw_dtype=raw_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return Path(path)


# ----------------------------------------------------------------------------------------------- the model


def check_llama_config(config) -> None:
    """Refuse configs that llama.cpp's plain Llama graph would run differently.

    Raises:
        UsageError: another architecture, or RoPE scaling (which this exporter does not translate).
    """
    architectures = tuple(getattr(config, "architectures", None) or ())
    if getattr(config, "model_type", None) != "llama" or not set(architectures) <= set(LLAMA_ARCHITECTURES):
        raise UsageError(f"--format gguf supports Llama models; this one is {config.model_type} {list(architectures)}")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UsageError(f"--format gguf does not support RoPE scaling ({rope.get('rope_type', rope.get('type'))})")


def rope_theta(config) -> float:
    """The RoPE base frequency (``rope_parameters["rope_theta"]`` in transformers 5, else ``rope_theta``)."""
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def add_llama_metadata(writer, config, dtype: str) -> None:
    """The ``general.file_type`` and ``llama.*`` hyperparameters llama.cpp builds its graph from."""
    import gguf

    writer.add_file_type(int(_file_type(dtype)))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim(config))
    if head_dim(config) != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim(config))    # llama.cpp would otherwise derive hidden / heads
        writer.add_value_length(head_dim(config))
    writer.add_vocab_size(config.vocab_size)


def permute_for_llama_rope(weight, n_heads: int):
    """Reorder the rows of a Q or K projection (or bias) from HF's rotate-half RoPE layout to llama.cpp's.

    Hugging Face rotates dimension ``i`` of each head with ``i + head_dim/2``; llama.cpp's (GPT-J style) RoPE
    rotates neighbours ``2i, 2i+1``. Within each of ``n_heads`` heads (``num_key_value_heads`` for K), the
    two halves are interleaved: rows ``[a0 a1 .. b0 b1 ..]`` become ``[a0 b0 a1 b1 ..]``.
    """
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2)
            .reshape(weight.shape))


def tensor_type(array, dtype: str):
    """The GGML type a tensor is stored as: F32 for vectors, else ``dtype`` (Q8_0 only where rows split into
    whole 32-value blocks, else F16, as llama.cpp's converter falls back)."""
    import gguf

    types = gguf.GGMLQuantizationType
    if array.ndim < 2 or dtype == "f32":
        return types.F32
    if dtype == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[types.Q8_0][0] == 0:
        return types.Q8_0
    return types.F16


def llama_tensors(model, dtype: str):
    """``(gguf name, array, GGML type)`` for every weight of a Llama, renamed, Q/K permuted and converted.

    ``lm_head.weight`` is left out when the embeddings are tied: llama.cpp then uses ``token_embd`` as its
    output matrix.

    Raises:
        UsageError: a weight with no llama.cpp name.
    """
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UsageError(f"--format gguf: no llama.cpp name for the weight {hf_name}")
        array = tensor.detach().float().cpu().numpy()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            array = permute_for_llama_rope(array, config.num_attention_heads)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            array = permute_for_llama_rope(array, config.num_key_value_heads)
        kind = tensor_type(array, dtype)
        yield gguf_name, gguf.quants.quantize(array, kind), kind


# ----------------------------------------------------------------------------------------------- the tokenizer


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """The ``tokenizer.ggml.pre`` value whose splitting matches the tokenizer's own pre-tokenizer.

    ``ByteLevel`` with the GPT-2 regex alone is ``gpt-2``; ``Digits(individual_digits)`` then ``ByteLevel`` is
    ``smollm``. (Tailor's SmolLM2 base, de-quantized by transformers from the shipped GGUF, has the plain
    ``ByteLevel`` one; SmolLM2's vocabulary has no merges that join digits, so both give the same ids.)

    Raises:
        UsageError: any other pre-tokenizer.
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    shape = tuple(step.get("type") for step in steps)
    byte_level = steps[-1].get("use_regex", True) if steps and shape[-1] == "ByteLevel" else False
    digits_apart = all(step.get("individual_digits", False) for step in steps if step.get("type") == "Digits")
    if shape in PRE_TOKENIZERS and byte_level and digits_apart:
        return PRE_TOKENIZERS[shape]
    raise UsageError(f"--format gguf: no llama.cpp pre-tokenizer matches this tokenizer's {list(shape)}")


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """The tokens by id and their ``gguf.TokenType`` for ``vocab_size`` ids.

    Special added tokens are CONTROL, other added tokens USER_DEFINED, ids the tokenizer does not use (the
    embedding matrix can be larger) ``[PAD<id>]`` UNUSED; the rest NORMAL.
    """
    import gguf

    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def bpe_merges(tokenizer_json: dict) -> list[str]:
    """The BPE merges as ``"left right"`` strings, in rank order (tokenizer.json stores pairs or strings)."""
    return [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"].get("merges", [])]


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts its BOS token in front of plain text (what llama.cpp's ``add_bos`` copies)."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos


def add_tokenizer_metadata(writer, tokenizer, vocab_size: int) -> None:
    """The ``tokenizer.*`` keys: a GPT-2 style BPE with its special tokens and chat template.

    Raises:
        UsageError: not a byte-level BPE fast tokenizer, more tokens than the embedding has rows, or no chat
            template.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UsageError("--format gguf needs a fast (tokenizers) tokenizer")
    data = json.loads(backend.to_str())
    if data["model"].get("type") != "BPE":
        raise UsageError(f"--format gguf supports byte-level BPE tokenizers, not {data['model'].get('type')}")
    if len(tokenizer) > vocab_size:
        raise UsageError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} embeddings")
    if not tokenizer.chat_template:
        raise UsageError("--format gguf needs a tokenizer with a chat template")
    tokens, types = vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(data))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(bpe_merges(data))
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.unk_token_id, writer.add_unk_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(adds_bos(tokenizer))
    writer.add_chat_template(tokenizer.chat_template)


# ----------------------------------------------------------------------------------------------- helpers


def _as_model(model_or_dir):
    """A model object as is; a directory loaded with ``AutoModelForCausalLM`` in fp32."""
    if not isinstance(model_or_dir, (str, Path)):
        return model_or_dir
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_or_dir), dtype=torch.float32)


def _file_type(dtype: str):
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"unknown GGUF dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")


def _readme(base_model: str, dtype: str) -> str:
    return (f"# {base_model}, fine-tuned with Tailor (LoRA merged), as GGUF ({dtype})\n\n"
            f"`{GGUF_FILE}` holds the weights, the tokenizer and the chat template for llama.cpp:\n\n"
            f"    llama-cli -m {GGUF_FILE} -cnv\n\n"
            "or from Python (`pip install llama-cpp-python`):\n\n"
            "    from llama_cpp import Llama\n"
            f"    llm = Llama(model_path=\"{GGUF_FILE}\", n_ctx=2048)\n"
            "    llm.create_chat_completion(messages=[{\"role\": \"user\", \"content\": \"Hello\"}])\n")
