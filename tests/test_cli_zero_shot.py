"""``tailor zero-shot``: its arguments, the name it registers under, and a run on the shipped bank intents from a
labels file, scored on their test file (the verb's parser built on its own, as ``tailor.cli`` wires it)."""

from __future__ import annotations

import argparse
import json

import pytest

from samples import SAMPLE_DIR, sample_rows
from tailor.cli_zero_shot import _name, add_parsers
from tailor.errors import UsageError

BANK_TEST = SAMPLE_DIR / "bank_intents_test.csv"


def parser() -> argparse.ArgumentParser:
    """A parser with the zero-shot verb alone, and ``common`` as :func:`tailor.cli.build_parser` defines it."""
    root = argparse.ArgumentParser(prog="tailor")
    verbs = root.add_subparsers(dest="verb", required=True)

    def common(p, tenant=True):
        p.add_argument("--json", action="store_true")
        if tenant:
            p.add_argument("--tenant", default="default")

    add_parsers(verbs, common)
    return root


def test_arguments_and_defaults():
    args = parser().parse_args(["zero-shot", "--labels", "billing,technical issue", "--name", "support"])
    assert (args.verb, args.labels, args.labels_file, args.name, args.base, args.eval_file, args.json) == (
        "zero-shot", "billing,technical issue", None, "support", "auto", None, False)
    assert args.func.__name__ == "cmd_zero_shot"


@pytest.mark.parametrize("argv", [["zero-shot"], ["zero-shot", "--labels", "a,b", "--labels-file", "l.txt"]])
def test_labels_come_from_exactly_one_place(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert ("one of the arguments --labels --labels-file is required" in err if len(argv) == 1 else
            "argument --labels-file: not allowed with argument --labels" in err)


def test_the_name_comes_from_the_option_or_a_file(tmp_path):
    def name(*argv):
        return _name(parser().parse_args(["zero-shot", *argv]))

    assert name("--labels", "a,b", "--name", "support") == "support"
    assert name("--labels-file", "intents/Support Intents.json") == "support-intents"
    assert name("--labels-file", "helpdesk/labels.json") == "helpdesk"
    assert name("--labels-file", "data/labels.txt", "--eval-file", "tickets_2024.csv") == "tickets_2024"
    with pytest.raises(UsageError, match=r"^name the model: pass --name NAME$"):
        name("--labels", "a,b")


def test_zero_shot_from_a_labels_file_scored_on_the_bank_intents(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TAILOR_DATABASE_URL", raising=False)
    labels = sorted({label for _, label in sample_rows(BANK_TEST)})
    (tmp_path / "bank_intents.txt").write_text("\n".join(labels) + "\n")
    args = parser().parse_args(["zero-shot", "--labels-file", str(tmp_path / "bank_intents.txt"),
                                "--eval-file", str(BANK_TEST), "--json"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["model"], summary["method"], summary["base_model"]) == ("bank_intents:1", "head", "minilm-l6")
    assert summary["labels"] == labels and summary["prompts"][:3] == ["apr", "balance", "card declined"]
    assert summary["scale"] == 15.0
    # 22 intents, 176 test rows: 0.8182 accuracy against 0.0455 for the eval file's majority class
    assert summary["metrics"]["accuracy"] == pytest.approx(0.8182, abs=0.005)
    assert summary["metrics"]["macro_f1"] == pytest.approx(0.8078, abs=0.005)
    assert summary["baseline"] == {"label": "apr", "accuracy": 0.0455, "macro_f1": 0.004}


def test_bad_labels_stop_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path / "home"))
    args = parser().parse_args(["zero-shot", "--labels", "billing", "--name", "support"])
    with pytest.raises(UsageError, match=r"^give at least 2 labels to choose between \(got 1: 'billing'\)$"):
        args.func(args)
    assert not (tmp_path / "home" / "models").exists()
