import json
from pathlib import Path

import pytest

from tailor.data.chat import DEFAULT_CHAT_MAX_LENGTH, ChatExample, encode_chat
from tailor.errors import DataError, UsageError
from tailor.train.checkpoint import Checkpointer, trainable_state
from tailor.train.progress import RecordingReporter
from tailor.train.sft import (ChatConfig, build_lora_model, chat_preset_names, collate_chat, fit_lora,
                              load_chat_preset)
from tiny_chat import build_tiny_chat_model, review_conversations, write_jsonl

ARTIFACT_FILES = {
    "TAILOR_COMPLETE.json", "tailor_model.json", "train_config.json", "metrics.json", "history.json",
    "data_report.json", "data_report.html", "eval_report.html",
    "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md",
    "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "tokenizer/chat_template.jinja",
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def encoded(tiny_dir):
    from tailor.models.causal import load_chat_tokenizer

    tokenizer = load_chat_tokenizer(tiny_dir)
    examples = [ChatExample(r["messages"], i + 1) for i, r in enumerate(review_conversations(48))]
    return tokenizer, encode_chat(tokenizer, examples[:40], 64), encode_chat(tokenizer, examples[40:], 64)


def _cfg(tiny_dir, **overrides) -> ChatConfig:
    values = dict(base=str(tiny_dir), epochs=2, batch_size=4, grad_accum=2, max_length=64, lr=1e-2, eval_every=2,
                  lora_dropout=0.1, seed=3, precision="fp32", device="cpu")
    return load_chat_preset("fast", **(values | overrides))


def _lora_model(tiny_dir, cfg):
    from tailor.models.causal import load_causal_lm

    return build_lora_model(load_causal_lm(tiny_dir)[0], cfg)


class CrashAfter(RecordingReporter):
    """A reporter that raises after ``n`` metric events, like a worker killed mid-run (after a checkpoint)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def metrics(self, step, data):
        super().metrics(step, data)
        if len(self.metric_events) >= self.n:
            raise KeyboardInterrupt("simulated crash")


def test_every_chat_preset_loads_and_bad_keys_are_refused():
    assert chat_preset_names() == ["default", "fast"]
    for name in chat_preset_names():
        assert load_chat_preset(name).base == "smollm2-135m-instruct"
    cfg = load_chat_preset("default")
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lr, cfg.max_length, cfg.batch_size * cfg.grad_accum) == (16, 32, 2e-4, 1024, 16)
    assert cfg.max_length == DEFAULT_CHAT_MAX_LENGTH and cfg.strict is False  # the service's report uses the constant
    assert load_chat_preset("fast").max_length == 256
    assert cfg.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(UsageError, match="^invalid chat training config: epoch: unknown setting$"):
        load_chat_preset("default", epoch=3)
    with pytest.raises(UsageError, match="^unknown chat preset 'quality'; chat presets are: default, fast$"):
        load_chat_preset("quality")
    with pytest.raises(UsageError, match="lora_alpha=1 is far below lora_r=64"):
        load_chat_preset("default", lora_r=64, lora_alpha=1)


def test_collate_pads_inputs_and_ignores_padding_in_labels(encoded):
    tokenizer, train, _ = encoded
    batch = collate_chat(train, [0, 1], pad_id=tokenizer.pad_token_id)
    width = max(len(train.input_ids[0]), len(train.input_ids[1]))
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    for k in range(2):
        n = len(train.input_ids[k])
        assert batch["attention_mask"][k].sum() == n
        assert batch["labels"][k, :n].tolist() == train.labels[k]
        assert (batch["labels"][k, n:] == -100).all()


def test_loss_falls_on_a_seeded_tiny_run(tiny_dir, encoded):
    from tailor.train.sft import assistant_loss

    tokenizer, train, val = encoded
    cfg = _cfg(tiny_dir, epochs=3)
    model = _lora_model(tiny_dir, cfg)
    before = assistant_loss(model, val, tokenizer.pad_token_id, "cpu")["loss"]
    reporter = RecordingReporter()
    outcome = fit_lora(model, train, val, cfg, pad_id=tokenizer.pad_token_id, device="cpu", bf16=False,
                       reporter=reporter)
    losses = [row["valid_loss"] for row in outcome.history]
    assert outcome.total_steps == outcome.steps == 3 * 5  # 10 micro-batches of 4 per epoch, 2 per step
    assert [row["step"] for row in outcome.history] == [2, 4, 5, 6, 8, 10, 12, 14, 15]
    assert losses[-1] < losses[0] < before
    assert before - min(losses) > 1.0
    assert outcome.best_valid_loss == min(losses)
    assert set(reporter.metric_events[0][1]) == {"step", "epoch", "total_steps", "train_loss", "valid_loss",
                                                 "train_mean_token_accuracy", "valid_mean_token_accuracy", "seconds"}


def test_resume_after_a_crash_gives_the_uninterrupted_result(tiny_dir, encoded, tmp_path):
    import torch

    tokenizer, train, val = encoded
    cfg = _cfg(tiny_dir)
    common = dict(pad_id=tokenizer.pad_token_id, device="cpu", bf16=False)

    whole = _lora_model(tiny_dir, cfg)
    expected = fit_lora(whole, train, val, cfg, reporter=RecordingReporter(),
                        checkpointer=Checkpointer(tmp_path / "whole"), **common)

    crashed = _lora_model(tiny_dir, cfg)
    with pytest.raises(KeyboardInterrupt):
        fit_lora(crashed, train, val, cfg, reporter=CrashAfter(3), checkpointer=Checkpointer(tmp_path / "run"),
                 **common)
    resumed_model = _lora_model(tiny_dir, cfg)
    reporter = RecordingReporter()
    resumed = fit_lora(resumed_model, train, val, cfg, reporter=reporter, checkpointer=Checkpointer(tmp_path / "run"),
                       resume=True, **common)

    assert resumed.resumed_from_step == 5
    assert reporter.messages[0][0] == "resumed from the checkpoint at step 5/10"
    assert [event[1]["step"] for event in reporter.metric_events] == [6, 8, 10]
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in expected.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history] == strip
    want, got = trainable_state(whole), trainable_state(resumed_model)
    assert want.keys() == got.keys() and len(want) == 2 * 7 * 2  # A and B for 7 projections in 2 layers
    for name in want:
        assert torch.allclose(want[name], got[name], atol=1e-6), name


def test_a_spent_time_budget_stops_after_one_step_with_a_validation(tiny_dir, encoded):
    import time

    tokenizer, train, val = encoded
    cfg = _cfg(tiny_dir)
    outcome = fit_lora(_lora_model(tiny_dir, cfg), train, val, cfg, pad_id=tokenizer.pad_token_id, device="cpu",
                       bf16=False, reporter=RecordingReporter(), deadline=time.monotonic() - 1)
    assert (outcome.stop_reason, outcome.steps, outcome.total_steps) == ("time_budget", 1, 10)
    assert [row["step"] for row in outcome.history] == [1] and outcome.best_step == 1


def test_chat_job_registers_a_peft_adapter_and_resumes_in_the_given_run_dir(tiny_dir, tmp_path, fresh_home):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tailor.registry.service import open_registry
    from tailor.train.chat_job import run_chat_job

    data = write_jsonl(tmp_path / "reviews.jsonl", review_conversations(60))
    options = dict(base=str(tiny_dir), epochs=2, batch_size=4, grad_accum=2, max_length=64, lr=1e-2, eval_every=3,
                   samples=2, sample_max_tokens=4, eval_examples=6, seed=1)
    run_dir = tmp_path / "runs" / "job-1"
    with pytest.raises(KeyboardInterrupt):
        run_chat_job(data, name="reviews", run_dir=run_dir, reporter=CrashAfter(1), **options)
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    reporter = RecordingReporter()
    result = run_chat_job(data, name="reviews", run_dir=run_dir, resume=True, reporter=reporter, **options)
    assert not (run_dir / "checkpoints").exists()  # cleared once the version is registered

    # the serving engine is built once the version is registered, so its first chat request need not wait
    from tailor.models.genai import DEFAULT_PRECISION, check_engine, engine_dir_for
    from tailor.settings import get_settings

    (text, data_), = [m for m in reporter.messages if m[0].startswith("serving engine ready")]
    assert text == f"serving engine ready ({data_['engine_s']:.1f} s)" and data_["engine_s"] > 0
    assert [m[0] for m in reporter.messages[-2:]] == ["registered reviews:1", text]
    assert result.timings["engine_s"] == data_["engine_s"]
    artifact = open_registry().artifact_dir(result.version)
    engine = engine_dir_for(artifact, get_settings().home / "cache" / "genai", DEFAULT_PRECISION)
    assert check_engine(engine, artifact, DEFAULT_PRECISION) is None

    version = result.version
    assert (version.ref, version.task, version.method, version.base_model) == ("reviews:1", "chat", "lora",
                                                                                str(tiny_dir))
    assert version.lineage["resumed_from_step"] == 3
    assert version.lineage["rows"] == {"train": 48, "valid": 6, "test": 6}
    test = version.metrics["test"]
    assert test["loss"] < test["base_loss"] and test["perplexity"] < test["base_perplexity"]
    assert set(test) >= {"loss", "perplexity", "base_loss", "base_perplexity", "exact_match", "macro_f1"}
    assert len(version.metrics["samples"]) == 2

    artifact = open_registry().artifact_dir(version)
    files = {p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()}
    assert files == ARTIFACT_FILES
    spec = json.loads((artifact / "tailor_model.json").read_text())
    assert (spec["task"], spec["base_model"], spec["max_length"]) == ("chat", str(tiny_dir), 64)
    assert spec["system_prompt"] == "You label product reviews."
    adapter_config = json.loads((artifact / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["peft_type"], adapter_config["r"], adapter_config["task_type"]) == ("LORA", 16, "CAUSAL_LM")
    history = json.loads((artifact / "history.json").read_text())
    assert [row["step"] for row in history["steps"]] == [3, 6, 9, 12]

    # plain PEFT loads the adapter onto the base and changes its output
    base = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    ids = torch.tensor([[1, 5, 9, 12, 2]])
    base_logits = base(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(base, str(artifact / "adapter")).eval()
    assert not torch.allclose(peft_model(input_ids=ids).logits, base_logits)


def _long_conversations() -> list[dict]:
    """Two with answers far over 512 tokens (truncated) around one whose question is (dropped)."""
    answer = {"messages": [{"role": "user", "content": "describe the lamp"},
                           {"role": "assistant", "content": "the lamp is good and fine, " * 200}]}
    question = {"messages": [{"role": "user", "content": "the lamp is good and fine, " * 200},
                             {"role": "assistant", "content": "positive"}]}
    return [answer, question, answer]


def test_a_chat_job_truncates_or_drops_a_few_long_examples_and_strict_checking_fails(tiny_dir, tmp_path, fresh_home):
    from tailor.data.chat import encode_conversation
    from tailor.models.causal import load_chat_tokenizer
    from tailor.train.chat_job import run_chat_job

    data = write_jsonl(tmp_path / "long.jsonl", review_conversations(40) + _long_conversations())
    options = dict(base=str(tiny_dir), epochs=1, batch_size=4, grad_accum=1, max_length=1000, samples=0,
                   eval_examples=4, seed=1, build_engine=False)
    reporter = RecordingReporter()
    result = run_chat_job(data, name="long", reporter=reporter, **options)
    messages = dict(reporter.messages)
    assert messages[f"max_length 1000 is above {tiny_dir}'s context: conversations get at most 512 tokens"] == \
        {"max_length": 512}
    said = ("3 conversations over the 512-token limit: 2 truncated (lines 41, 43), 1 dropped, no assistant token "
            "within the limit (line 42)")
    over = {"max_length": 512, "truncated": {"count": 2, "lines": [41, 43]}, "dropped": {"count": 1, "lines": [42]}}
    assert messages[said] == over
    assert result.data_report["over_limit"] == over and result.data_report["examples"] == 42
    assert result.data_report["tokens"]["max"] == 512 and result.config["max_length"] == 512
    assert sum(result.version.lineage["rows"].values()) == 42
    assert result.metrics["test"]["loss"] > 0 and not any(m.startswith("serving engine") for m in messages)

    tokenizer = load_chat_tokenizer(tiny_dir)
    n = len(encode_conversation(tokenizer, _long_conversations()[0]["messages"])[0])
    with pytest.raises(DataError) as info:
        run_chat_job(data, name="long-strict", reporter=RecordingReporter(), strict=True, **options)
    assert str(info.value) == (f"line 41: {n:,} tokens, {n - 512:,} over the 512-token limit (and 2 more problems, "
                               "at lines 42, 43)")


def test_the_api_s_strict_option_reaches_the_chat_config_and_is_refused_for_classifiers():
    from tailor.jobs.spec import CHAT, CLASSIFICATION, JobCreate, resolve_training

    def body(**tailor):
        return JobCreate(model="m", training_file="file-1", method={"type": "supervised", "tailor": tailor})

    assert resolve_training(body(strict=True), CHAT)[1]["strict"] is True
    assert "strict" not in resolve_training(body(), CHAT)[1]
    assert body().tailor_options().model_dump(exclude_none=True) == {"method": "auto", "preset": "default"}
    with pytest.raises(UsageError, match="^strict checking of token lengths is for chat jobs; classification "
                                         "truncates long texts$"):
        resolve_training(body(strict=True), CLASSIFICATION)


def test_cli_trains_a_chat_model_and_shows_it(tiny_dir, tmp_path):
    import os
    import subprocess
    import sys

    def tailor(*args, stdin: str | None = None):
        env = dict(os.environ, TAILOR_HOME=str(tmp_path / "home"))
        return subprocess.run([sys.executable, "-m", "tailor", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=600, input=stdin)

    data = write_jsonl(tmp_path / "reviews.jsonl", review_conversations(30))
    out = tailor("train", data, "--task", "chat", "--base", tiny_dir, "--preset", "fast", "--epochs", "1",
                 "--max-length", "64", "--name", "cli-chat", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (summary["model"], summary["task"], summary["method"], summary["examples"]) == ("cli-chat:1", "chat",
                                                                                           "lora", 30)
    assert set(summary["metrics"]["test"]) >= {"loss", "base_loss", "perplexity", "base_perplexity"}
    shown = tailor("models", "show", "cli-chat")
    assert shown.returncode == 0 and "task chat  method lora" in shown.stdout and "test: loss " in shown.stdout
    listed = tailor("models", "list", "--json")
    assert [m["name"] for m in json.loads(listed.stdout)["models"]] == ["cli-chat"]

    # tailor chat: one question, then a piped conversation (one answer line per user line; /reset is no turn)
    one = tailor("chat", "cli-chat", "-m", "the lamp is great", "--max-tokens", "4")
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 1, one.stderr
    piped = tailor("chat", "cli-chat@latest", "--max-tokens", "3", stdin="the pen is bad\n/reset\nthe bag is fine\n")
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 2, piped.stderr
    missing = tailor("chat", "nope", "-m", "hi")
    assert (missing.returncode, missing.stderr.strip()) == (2, "error: model 'nope' not found")

    # --json: one object; a reply cut at --max-tokens says so (finish_reason, and a note on stderr in text mode)
    cut = tailor("chat", "cli-chat", "-m", "the lamp is great", "--max-tokens", "1", "--json")
    assert cut.returncode == 0, cut.stderr
    reply = json.loads(cut.stdout.strip().splitlines()[-1])
    assert set(reply) == {"model", "message", "reply", "finish_reason", "usage"}
    assert (reply["model"], reply["message"], reply["finish_reason"]) == ("cli-chat:1", "the lamp is great", "length")
    usage = reply["usage"]
    assert usage["completion_tokens"] == 1 and usage["total_tokens"] == usage["prompt_tokens"] + 1 > 1
    text = tailor("chat", "cli-chat", "-m", "the lamp is great", "--max-tokens", "1")
    assert text.stdout == reply["reply"] + "\n"
    assert text.stderr.splitlines()[-1] == "[stopped at --max-tokens 1]"  # plain: stderr is not a terminal here
    no_question = tailor("chat", "cli-chat", "--json")
    assert (no_question.returncode, no_question.stderr.strip()) == (
        2, "error: --json answers one question: give it with -m/--message")

    # an ft: id names its tenant, as predict, show and export read it
    from api_helpers import publish_copy
    from tailor.registry.service import open_registry
    from tailor.settings import Settings

    settings = Settings(home=tmp_path / "home")
    version = open_registry(settings).store.resolve("default", "cli-chat")
    publish_copy(settings, (open_registry(settings).artifact_dir(version), version), "acme", "ft:tiny:acme:cli:ftjob-1")
    ft = tailor("chat", "ft:tiny:acme:cli:ftjob-1", "-m", "the lamp is great", "--max-tokens", "1", "--json")
    assert ft.returncode == 0, ft.stderr
    assert json.loads(ft.stdout.strip().splitlines()[-1])["model"] == "ft:tiny:acme:cli:ftjob-1:1"

    bad = write_jsonl(tmp_path / "bad.jsonl", review_conversations(3) + ['{"messages": [{"role": "bot", "content": "x"}]}'])
    out = tailor("train", bad, "--task", "chat", "--base", tiny_dir)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: line 4: messages[0].role is 'bot'; allowed roles are system, user, "
                                  "assistant")
    out = tailor("train", data, "--task", "chat", "--method", "lora")
    assert (out.returncode, out.stderr.strip()) == (2, "error: --task chat does not use --method (classification options)")


@pytest.mark.slow
def test_real_smollm2_fine_tune_lowers_validation_loss(tmp_path):
    """SmolLM2-135M-Instruct, 16 medical Q&A conversations, one epoch at 256 tokens (about a minute on 2 cores,
    plus the one-time GGUF conversion in the session's storage root)."""
    from importlib import resources

    from tailor.train.chat_job import run_chat_job

    folder = resources.files("tailor").joinpath("sample_data")
    lines = (folder / "medquad_chat_train.jsonl").read_text(encoding="utf-8").splitlines()
    train = write_jsonl(tmp_path / "train.jsonl", lines[:20])
    test = write_jsonl(tmp_path / "test.jsonl", (folder / "medquad_chat_test.jsonl").read_text().splitlines()[:6])
    result = run_chat_job(train, eval_file=test, name="medquad-slow-test", epochs=1, max_length=256, batch_size=4,
                          grad_accum=1, lr=1e-3, val_size=0.2, samples=1, sample_max_tokens=8)
    metrics = result.metrics["test"]
    assert result.version.base_model == "smollm2-135m-instruct"
    assert metrics["loss"] < metrics["base_loss"] - 0.05
    assert metrics["perplexity"] < metrics["base_perplexity"]
