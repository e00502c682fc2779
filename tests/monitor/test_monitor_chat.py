"""A chat version's monitoring report: tokens, empty and declined answers, truncation, ratings per bucket."""

from __future__ import annotations

from datetime import timedelta

from tailor.db import now
from tailor.monitor.feedback import Feedback
from tailor.monitor.records import PredictionRecord
from tailor.monitor.report import chat_report, is_refusal


def test_refusals_are_answers_that_open_by_declining():
    declined = ["I'm sorry, but I can't help with that.", "I cannot provide medical advice.", "As an AI, I ...",
                "Sorry, I don't know.", "抱歉，我无法回答这个问题。", "  I am unable to do that"]
    answered = ["Anemia is a lack of red blood cells. I'm sorry to hear you feel tired.", "Yes.", "",
                "Cannot-miss symptoms include fatigue."]
    assert [is_refusal(t) for t in declined] == [True] * len(declined)
    assert [is_refusal(t) for t in answered] == [False] * len(answered)


def test_the_chat_report_counts_per_bucket():
    end = now()
    start = end - timedelta(hours=2)
    outputs = [("Anemia is a lack of red blood cells.", "stop", 8), ("I'm sorry, I can't help.", "stop", 6),
               ("", "stop", 0), ("Iron-rich food helps", "length", 12), ("Partial", None, 3)]
    records = [PredictionRecord(id=f"chatcmpl-{i}", tenant="acme", kind="chat.completion", model="bot",
                                model_name="bot", version=1, created_at=start + timedelta(minutes=10 + 25 * i),
                                latency_ms=100.0 * (i + 1), prompt_tokens=20, completion_tokens=tokens, output=text,
                                details={"finish_reason": finish})
               for i, (text, finish, tokens) in enumerate(outputs)]
    feedback = {"chatcmpl-0": Feedback("acme", "chatcmpl-0", rating="up"),
                "chatcmpl-1": Feedback("acme", "chatcmpl-1", rating="down", correction="Try iron supplements.")}
    report = chat_report(records, feedback, model="bot:1", start=start, end=end, bucket=timedelta(hours=1))
    assert report["totals"] == {"requests": 5, "answers": 5, "empty": 1, "refusals": 1, "truncated": 1,
                                "unfinished": 1, "prompt_tokens": 100, "completion_tokens": 29,
                                "completion_tokens_mean": 5.8,
                                "latency_ms": {"p50": 300.0, "p95": 480.0, "p99": 496.0}}
    assert report["feedback"] == {"rated": 2, "up": 1, "down": 1, "corrections": 1}
    assert [(b["requests"], b["refusal_rate"], b["empty_rate"], b["completion_tokens"]) for b in report["buckets"]] == [
        (2, 0.5, 0.0, 14), (3, 0.0, 0.3333, 15)]
    empty = chat_report([], {}, model="bot:1", start=start, end=end, bucket=timedelta(hours=1))
    assert empty["totals"]["completion_tokens_mean"] is None and empty["buckets"][0]["refusal_rate"] is None
