"""Estimates before launch (:func:`tailor.train.chat_job.estimate_chat_job`): the chat job's own preparation and
estimate, the base loaded only when no cached probe fits."""

from __future__ import annotations

import pytest

from tiny_chat import build_tiny_chat_model, review_conversations, write_jsonl


def test_a_chat_estimate_probes_the_base_once_then_reads_the_cache(tmp_path, monkeypatch):
    import tailor.models.causal
    from tailor.settings import Settings
    from tailor.train.chat_job import estimate_chat_job

    settings = Settings(home=tmp_path / "home")
    tiny = build_tiny_chat_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "reviews.jsonl", review_conversations(40))
    options = dict(settings=settings, base=str(tiny), epochs=2, batch_size=4, grad_accum=1, max_length=64,
                   samples=1, sample_max_tokens=4, eval_examples=4)
    first = estimate_chat_job(data, **options)
    assert {k: first[k] for k in ("task", "method", "auto_method", "rows", "labels", "base_model")} == {
        "task": "chat", "method": "lora", "auto_method": "lora", "rows": {"train": 32, "validation": 4, "test": 4},
        "labels": None, "base_model": str(tiny)}
    found = first["estimates"]["lora"]
    assert (found["method"], found["epochs"], list(found["stages"])) == (
        "chat-lora", 2, ["data", "train", "validation", "test", "save"])
    assert found["stages"]["train"] > 0 and found["total_s"] == pytest.approx(sum(found["stages"].values()), abs=0.11)

    def no_load(*args, **kwargs):
        raise AssertionError("the base was loaded again")

    monkeypatch.setattr(tailor.models.causal, "load_causal_lm", no_load)
    again = estimate_chat_job(data, **options)
    assert again["estimates"]["lora"]["stages"]["train"] == found["stages"]["train"]
