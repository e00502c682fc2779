"""The monitoring verbs: alert settings and a check, the review queue exported and labelled, and the labels
imported back as feedback, on a trained version's recorded answers."""

from __future__ import annotations

import csv
import io
import json

from samples import SAMPLE_TEST, sample_rows
from test_cli import run_cli


def _record_answers(version, url, texts):
    """Answers made two hours ago: outside the one-hour window of test_cli's monitor test on the same home."""
    from datetime import timedelta

    from tailor.data.fingerprint import text_features
    from tailor.db import now
    from tailor.monitor.records import PredictionRecord, PredictionStore, new_id

    labels = sorted(version.lineage["label_counts"])
    answers = []
    for i, text in enumerate(texts):
        top = labels[i % len(labels)]
        scores = {k: (0.4 + 0.1 * (i % 5) if k == top else (0.6 - 0.1 * (i % 5)) / (len(labels) - 1)) for k in labels}
        answers.append(PredictionRecord(id=new_id("classification"), tenant="default", kind="classification",
                                        model=version.name, model_name=version.name, version=version.version,
                                        request_id=f"clf-cli-{i}", latency_ms=5.0, prompt_tokens=12, label=top,
                                        score=max(scores.values()), scores=scores, input={"text": text},
                                        features=text_features(text, 0), created_at=now() - timedelta(hours=2)))
    PredictionStore(url).add(answers)
    return answers, labels


def test_alerts_review_and_feedback_verbs(trained, session_home, tmp_path):
    from tailor.settings import Settings

    version = trained["head"].version
    answers, labels = _record_answers(version, Settings(home=session_home).registry_url,
                                      [t for t, _ in sample_rows(SAMPLE_TEST)[:40]])

    bad = run_cli("alerts", version.name, "--rule", "accuracy is low")
    assert bad.returncode == 2 and bad.stderr.startswith("error: rule 'accuracy is low': write METRIC<NUMBER")
    assert "Traceback" not in bad.stderr
    set_ = run_cli("alerts", version.name, "--rule", "answers>=40", "--rule", "estimated_accuracy<0",
                   "--window-hours", "3", "--json")
    assert set_.returncode == 0, set_.stderr
    assert [r["metric"] for r in json.loads(set_.stdout)["config"]["rules"]] == ["answers", "estimated_accuracy"]
    checked = json.loads(run_cli("alerts", version.name, "--check", "--json").stdout)
    assert [(a["rule"], a["state"], a["delivery"]) for a in checked["changed"]] == [("answers >= 40", "firing", "none")]
    text = run_cli("alerts", version.name).stdout
    assert "rules over the last 3 h: answers >= 40, estimated_accuracy < 0; webhook none" in text
    assert f"{version.name}:{version.version}  answers >= 40" in text

    queue = tmp_path / "queue.csv"
    out = run_cli("review", version.name, "--limit", "5", "--format", "csv", "--output", queue)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(queue.read_text(encoding="utf-8"))))
    assert len(rows) == 5 and {r["prediction_id"] for r in rows} <= {a.id for a in answers}
    for row in rows[:2]:
        row["true_label"] = labels[0]
    with queue.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    imported = run_cli("feedback", queue)
    assert (imported.returncode, imported.stdout.strip()) == (0, "2 labels recorded as feedback"), imported.stderr
    again = json.loads(run_cli("review", version.name, "--limit", "100", "--json").stdout)
    assert not {r["prediction_id"] for r in rows[:2]} & {i["prediction_id"] for i in again["data"]}
    missing = run_cli("feedback", tmp_path / "nope.csv")
    assert missing.returncode == 2 and "nope.csv: no such file" in missing.stderr
    not_chat = run_cli("corrections", version.name)
    assert (not_chat.returncode, not_chat.stderr.strip()) == (
        2, f"error: {version.name}:{version.version} is a classify model; corrections are kept for chat models")
