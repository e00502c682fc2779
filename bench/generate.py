"""Decode speed of a fine-tuned SmolLM2 served by Tailor's API, beside the peers, in one run.

Three systems answer the same held-out MedQuAD questions greedily, one after another, so they never share
the cores:

- **tailor-api**: ``tailor serve`` (a subprocess) streaming ``/v1/chat/completions`` to the ``openai``
  client; the fine-tuned version (base + LoRA, merged at load) on the onnxruntime-genai engine
  (:mod:`tailor.models.genai`, built by the server on the first request and cached under ``--home``);
- **transformers**: the peer, ``generate()`` in this process on the same merged weights;
- **llama.cpp**: llama-cpp-python on the shipped base GGUF (Q4_1), for reference, when it is installed.

For each it prints time to first token (median) and decode tokens/s (tokens after the first, over the time
after the first), then the API's ratios to both peers beside the targets (>= 4x ``generate()``, >= 0.8x
llama.cpp), and which engine the server decoded with. The fine-tuned model is the registry version
``--model`` of tenant ``bench`` in ``--home``; without one, a quick LoRA fine-tune on the shipped MedQuAD
sample makes it first. The summary is written to ``bench/results/generate.json``.

Usage::

    .venv/bin/python bench/generate.py [--home DIR] [--model REF] [--max-tokens 128] [--prompts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from classify_vs_trainer import REPO_ROOT, write_summary
from local_server import local_server

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "generate.json"
SAMPLES = REPO_ROOT / "src" / "tailor" / "sample_data"
TENANT = "bench"
TARGETS = {"api_vs_generate": 4.0, "api_vs_llama_cpp": 0.8}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="TAILOR_HOME to use (default: a temporary one)")
    parser.add_argument("--model", default="bench-medquad", help="chat version of tenant 'bench' to serve")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=5, help="held-out questions per system")
    return parser.parse_args(argv)


def held_out_questions(n: int) -> list[list[dict]]:
    """The first ``n`` test conversations without their answers."""
    rows = [json.loads(line) for line in (SAMPLES / "medquad_chat_test.jsonl").read_text().splitlines()[:n]]
    return [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]


def ensure_model(settings, ref: str) -> None:
    """Fine-tune the benchmark's chat model if the registry does not have it yet (a few minutes)."""
    from tailor.errors import NotFoundError
    from tailor.registry.service import open_registry
    from tailor.train.chat_job import run_chat_job

    try:
        open_registry(settings).store.resolve(TENANT, ref)
        return
    except NotFoundError:
        pass
    print(f"fine-tuning {ref} on the MedQuAD sample first (LoRA, 1 epoch)...", flush=True)
    run_chat_job(SAMPLES / "medquad_chat_train.jsonl", name=ref.split(":")[0].split("@")[0], tenant=TENANT,
                 preset="fast", settings=settings)


def api_key(settings) -> str:
    from tailor.errors import UsageError
    from tailor.security.keys import TenantStore

    store = TenantStore(settings.registry_url)
    try:
        return store.create_tenant(TENANT)[1]
    except UsageError:
        return store.create_key(TENANT, "bench", "read")[1]


def summarize(runs: list[tuple[float, float, int]]) -> dict:
    """``runs`` of (time to first token, total seconds, tokens) → medians and the pooled decode rate."""
    decode_tokens = sum(max(n - 1, 0) for _, _, n in runs)
    decode_seconds = sum(total - first for first, total, _ in runs)
    return {"ttft_ms_p50": round(1000 * statistics.median(r[0] for r in runs), 1),
            "decode_tokens_per_s": round(decode_tokens / decode_seconds, 1) if decode_seconds else None,
            "tokens": sum(n for _, _, n in runs), "prompts": len(runs)}


def bench_api(home: Path, ref: str, questions, max_tokens: int) -> dict:
    import openai

    from tailor.settings import Settings

    key = api_key(Settings(home=home))
    with local_server(home) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=600)
        client.chat.completions.create(model=ref, messages=questions[0], max_tokens=2)  # load the model once
        runs = []
        for messages in questions:
            start, first, tokens = time.perf_counter(), None, 0
            stream = client.chat.completions.create(model=ref, messages=messages, max_tokens=max_tokens,
                                                    temperature=0, stream=True,
                                                    stream_options={"include_usage": True})
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content and first is None:
                    first = time.perf_counter() - start
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
            runs.append((first or 0.0, time.perf_counter() - start, tokens))
        return summarize(runs)


def bench_generate(home: Path, ref: str, questions, max_tokens: int) -> dict:
    """The peer: transformers ``generate()`` on the same merged weights, greedy, in this process."""
    import torch

    from tailor.models.causal import load_chat_model
    from tailor.settings import Settings

    chat = load_chat_model(ref, tenant=TENANT, settings=Settings(home=home), merge=True)
    runs = []
    for messages in questions:
        ids = torch.tensor([chat.prompt_ids(messages)])
        start = time.perf_counter()
        with torch.inference_mode():
            chat.model.generate(ids, max_new_tokens=1, do_sample=False)
            first = time.perf_counter() - start
            start = time.perf_counter()
            out = chat.model.generate(ids, max_new_tokens=max_tokens, do_sample=False)
        total = time.perf_counter() - start
        runs.append((first, total, out.shape[1] - ids.shape[1]))
    return summarize(runs)


def bench_llama_cpp(questions, max_tokens: int) -> dict | None:
    """llama.cpp on the shipped base GGUF, or None when llama-cpp-python is not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama.cpp: skipped (pip install llama-cpp-python to compare)")
        return None
    from tailor.models.causal import locate_smollm2_gguf
    from tailor.runtime import usable_cores

    llm = Llama(model_path=str(locate_smollm2_gguf()), n_ctx=1024, n_threads=usable_cores(), verbose=False)
    runs = []
    for messages in questions:
        start, first, tokens = time.perf_counter(), None, 0
        for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0,
                                                stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                tokens += 1
                first = first if first is not None else time.perf_counter() - start
        runs.append((first or 0.0, time.perf_counter() - start, tokens))
    return summarize(runs)


def server_engines(home: Path) -> list[str]:
    """The onnxruntime-genai engines the server built under ``home`` (empty: it decoded with PyTorch)."""
    root = home / "cache" / "genai"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def ratios_against_targets(results: dict) -> dict:
    """The API's decode-rate ratios to each peer that ran, rounded to 0.01."""
    api = results["tailor-api"]["decode_tokens_per_s"]
    peers = {"api_vs_generate": results["transformers"], "api_vs_llama_cpp": results["llama.cpp"]}
    return {key: round(api / peer["decode_tokens_per_s"], 2) for key, peer in peers.items() if peer}


def print_table(results: dict, ratios: dict, engines: list[str]) -> None:
    print(f"\n{'system':<14}{'TTFT p50 ms':>13}{'decode tok/s':>14}{'tokens':>8}")
    for name, row in results.items():
        if row:
            print(f"{name:<14}{row['ttft_ms_p50']:>13}{row['decode_tokens_per_s']:>14}{row['tokens']:>8}")
    for key, ratio in ratios.items():
        verdict = "met" if ratio >= TARGETS[key] else "NOT met"
        print(f"{key}: {ratio}x (target >= {TARGETS[key]}x: {verdict})")
    print("server engine: " + (", ".join(engines) if engines else "none built (the server decoded with PyTorch)"))


def main(argv=None) -> dict:
    args = parse_args(argv)
    from tailor.settings import Settings

    home = args.home or Path(tempfile.mkdtemp(prefix="tailor-bench-generate-"))
    os.environ["TAILOR_HOME"] = str(home)
    ensure_model(Settings(home=home), args.model)
    questions = held_out_questions(args.prompts)
    results = {"tailor-api": bench_api(home, args.model, questions, args.max_tokens),
               "transformers": bench_generate(home, args.model, questions, args.max_tokens),
               "llama.cpp": bench_llama_cpp(questions, args.max_tokens)}
    ratios, engines = ratios_against_targets(results), server_engines(home)
    print_table(results, ratios, engines)
    return write_summary({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
                          "model": args.model, "max_tokens": args.max_tokens, "results": results,
                          "ratios": ratios, "targets": TARGETS, "server_engines": engines}, RESULTS_PATH)


if __name__ == "__main__":
    main()
