"""``tailor eval`` and ``tailor predict`` on a real trained version: the mistakes it lists, its coverage
against accuracy, and abstaining from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html import escape

import pytest


@pytest.fixture(scope="module")
def trained_head(tmp_path_factory, small_train_csv):
    """A head-only version (1 epoch on 60 finance tweets) in its own storage root: ``(settings, TrainResult)``."""
    import tailor
    from tailor.settings import Settings

    home = tmp_path_factory.mktemp("eval-home")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tailor.db'}")
    return settings, tailor.fine_tune(small_train_csv, name="tweets", method="head", epochs=1, seed=0,
                                      settings=settings)


def run_cli(home, *args):
    env = dict(os.environ, TAILOR_HOME=str(home), TAILOR_DATABASE_URL=f"sqlite:///{home / 'tailor.db'}")
    return subprocess.run([sys.executable, "-m", "tailor", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_evaluation_lists_mistakes_and_coverage(trained_head, small_test_csv, tmp_path):
    from tailor.eval.run import evaluate_model

    settings, result = trained_head
    report = tmp_path / "eval.html"
    evaluation = evaluate_model("tweets@latest", small_test_csv, settings=settings, report_path=report)
    metrics, misclassified = evaluation["metrics"], evaluation["misclassified"]
    matrix = metrics["confusion_matrix"]["matrix"]
    assert misclassified["count"] == metrics["n"] - sum(matrix[i][i] for i in range(len(matrix))) > 0
    confidences = [e["confidence"] for e in misclassified["examples"]]
    assert confidences == sorted(confidences, reverse=True) and len(confidences) == min(50, misclassified["count"])
    assert all(e["label"] != e["predicted"] for e in misclassified["examples"])

    abstain = evaluation["abstain"]
    assert abstain["suggested"] == result.version.metrics["abstain"]
    assert abstain["curve"][0] == {"threshold": 0.0, "answered": metrics["n"], "coverage": 1.0,
                                   "accuracy": metrics["accuracy"]}
    page = report.read_text()
    worst = misclassified["examples"][0]
    assert (f'<tr><td class="num">{worst["line"]}</td><td>{escape(worst["text"])}</td><td>{worst["label"]}</td>'
            f'<td>{worst["predicted"]}</td><td class="num">{worst["confidence"]:.4f}</td></tr>') in page
    assert "<h2>Coverage against accuracy</h2>" in page
    assert json.loads(json.dumps(evaluation)) == evaluation


def test_predict_abstains_from_the_command_line(trained_head):
    settings, result = trained_head
    text = "Shares tumble on fraud probe"
    out = run_cli(settings.home, "predict", "tweets", text, "--abstain-threshold", "0.99")
    assert out.returncode == 0, out.stderr
    label, score, echoed = out.stdout.strip().splitlines()[-1].split("\t")
    assert (label, echoed) == ("(abstain)", text) and float(score) < 0.99
    after = run_cli(settings.home, "predict", "tweets", "--abstain-threshold", "0.99", text)  # texts after options
    assert (after.returncode, after.stdout) == (0, out.stdout)

    out = run_cli(settings.home, "predict", "tweets", text, "--abstain-threshold", "0", "--json")
    prediction = json.loads(out.stdout.strip().splitlines()[-1])
    assert prediction["abstain_threshold"] == 0.0
    assert set(prediction["predictions"][0]) == {"text", "label", "score", "scores", "abstained"}

    out = run_cli(settings.home, "predict", "tweets", text, "--abstain-threshold", "1.5")
    assert (out.returncode, out.stderr) == (2, "error: --abstain-threshold: 1.5 is not a probability between 0 and 1\n")

    # 6 validation rows, 4 right: no threshold that answers all 6 reaches 95%, so --abstain has none to use
    record = result.version.metrics["abstain"]
    assert (record["rows"], record["reachable"], record["threshold"]) == (6, False, None)
    assert result.version.metrics["calibration"] == {"temperature": 1.0, "rows": 6, "fitted": False}
    assert record["note"].startswith("no threshold that keeps at least 6 of 6 validation rows answered reaches 95%")
    out = run_cli(settings.home, "predict", "tweets", text, "--abstain")
    assert (out.returncode, out.stderr) == (
        2, f"error: tweets:1 has no suggested abstain threshold: {record['note']}; give a threshold with "
           "--abstain-threshold\n")
