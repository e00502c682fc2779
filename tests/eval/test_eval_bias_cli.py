"""``tailor eval --slice-col/--counterfactual`` and ``tailor gate`` as a user runs them, on a real classifier: the
slice table and bias report stored with the version, a missing column refused in one line, a release refused
with the numbers, overridden with a reason, and allowed once the gate is relaxed."""

from __future__ import annotations

import getpass
import json

from api_helpers import csv_bytes, publish_copy
from samples import SAMPLE_TEST, sample_rows
from test_cli import run_cli


def fairness_of(settings, version=1):
    from tailor.registry.service import open_registry

    return open_registry(settings).store.get_version("default", "tweets", version).metrics.get("fairness")


def test_bias_report_then_the_gate_from_the_command_line(tmp_path, head_artifact):
    from tailor.settings import Settings

    home = tmp_path / "home"
    settings = Settings(home=home)
    publish_copy(settings, head_artifact, "default", "tweets")
    data = tmp_path / "test.csv"
    # the regions split the tweets by label (both at least 30 rows, the least a slice is judged on), so their
    # accuracies are the model's recalls, which differ
    data.write_bytes(csv_bytes([(("He says " if i % 4 == 0 else "") + text, label,
                                 "north" if label == "neutral" else "south")
                                for i, (text, label) in enumerate(sample_rows(SAMPLE_TEST)[:100])],
                               header=("text", "label", "region")))

    def cli(*args):
        out = run_cli(*args, home=home)
        return out.returncode, out.stdout.strip(), out.stderr

    assert cli("eval", "tweets:1", data, "--slice-col", "regionx") == (
        2, "", f"error: no column 'regionx' in {data} (columns: text, label, region)\n")
    assert fairness_of(settings) is None  # nothing stored
    assert cli("eval", "tweets:1", data, "--terms", data) == (
        2, "", "error: terms are for the counterfactual check: pass --counterfactual with --terms\n")

    report = tmp_path / "eval.html"
    code, stdout, _ = cli("eval", "tweets:1", data, "--slice-col", "region", "--counterfactual", "--json",
                          "--report", report)
    assert code == 0
    fairness = json.loads(stdout.splitlines()[-1])["fairness"]
    assert fairness == fairness_of(settings)
    assert (fairness["slice_column"], sorted((s["value"], s["n"]) for s in fairness["slices"])) == (
        "region", [("north", 66), ("south", 34)])
    assert fairness["counterfactual"]["checked"] >= 20
    assert "<h2>Bias and slices</h2>" in report.read_text()
    gap = fairness["largest_gap"]
    assert gap > 0

    code, stdout, _ = cli("eval", "tweets:1", data)  # the finder alone keeps the stored slice report
    assert code == 0 and "worst slices" in stdout and "slices of 'region'" not in stdout
    assert fairness_of(settings)["slice_column"] == "region"

    assert cli("gate", "set", "default", "--max-slice-gap", "0.0001", "--max-flip-rate", "1")[0] == 0
    refused = cli("models", "alias", "tweets:1", "prod")
    assert refused == (2, "", f"error: release gate: tweets:1 fails: largest slice gap {gap:.4f} > 0.0001 (region) "
                              "(an admin may override with a reason)\n")
    assert cli("models", "alias", "tweets:1", "prod", "--override") == (
        2, "", "error: an override of the release gate needs a reason\n")
    assert cli("models", "alias", "tweets:1", "prod", "--override", "--reason", "pilot only")[0] == 0
    history = json.loads(cli("models", "aliases", "tweets", "--json")[1])["history"]
    assert (history[-1]["actor"], history[-1]["reason"]) == (
        f"cli:{getpass.getuser()}",
        f"release gate overridden (largest slice gap {gap:.4f} > 0.0001 (region)): pilot only")

    assert cli("gate", "set", "default", "--max-slice-gap", "0.5") == (
        0, "tenant default: a version must have\n  largest slice gap <= 0.5", "")
    assert json.loads(cli("gate", "show", "default", "--json")[1]) == {
        "tenant": "default", "min_accuracy": None, "min_macro_f1": None, "max_slice_gap": 0.5,
        "max_flip_rate": None, "require_fairness": False}
    assert cli("models", "alias", "tweets:1", "staging") == (0, "tweets@staging → tweets:1", "")
