"""The ``tailor`` command as a user runs it: bad input gives one line and exit 2; --json gives one object."""

import json
import os
import subprocess
import sys
import time

import pytest

from samples import SAMPLE_TEST, sample_rows, write_csv


def run_cli(*args, home=None, env_extra=None):
    env = dict(os.environ)
    if home is not None:
        env["TAILOR_HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "tailor", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_help_is_fast():
    start = time.perf_counter()
    out = run_cli("--help")
    assert out.returncode == 0
    assert "data" in out.stdout and "train" in out.stdout and "models" in out.stdout
    assert time.perf_counter() - start < 5  # a generous bound: the point is that torch is not imported


def test_help_does_not_import_torch():
    code = "import sys, tailor.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


BAD_INPUTS = [
    ("empty.csv", b"", "error: file is empty"),
    ("header.csv", b"text,label\n", "error: no data rows after the header"),
    ("one.csv", b"text,label\n" + b"".join(b"row %d,spam\n" % i for i in range(20)),
     "error: only one class ('spam') in training data: a classifier needs at least two"),
    ("cols.csv", b"body,category\nhello,a\nworld,b\n", None),
    ("junk.csv", bytes(range(256)) * 40, "looks like a binary file"),
    ("bad.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\nnot json\n', "error: line 3: not valid JSON"),
    ("unique.csv", b"text,label\n" + b"".join(b"row %d,id%d\n" % (i, i) for i in range(50)),
     "error: every label is unique (50 rows, 50 labels): is the label column an id?"),
]


@pytest.mark.parametrize("name,content,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_training_input_fails_cleanly_and_registers_nothing(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    args = ["train", path] + (["--label-col", "missing"] if name == "cols.csv" else [])
    out = run_cli(*args, home=tmp_path / "home")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    expected = message or "error: column 'missing' not found; columns are: body, category"
    assert expected in lines[0]
    listing = run_cli("models", "list", "--json", home=tmp_path / "home")
    assert json.loads(listing.stdout.strip().splitlines()[-1]) == {"models": []}


def test_file_over_the_size_limit(tmp_path):
    path = write_csv(tmp_path / "big.csv", sample_rows()[:300])
    out = run_cli("data", "check", path, "--no-tokens", env_extra={"TAILOR_MAX_FILE_MB": "0.01"})
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "MiB" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unknown_model_and_bad_flags(tmp_path):
    out = run_cli("predict", "nope@production", "hello", home=tmp_path)
    assert (out.returncode, out.stderr.strip()) == (2, "error: model 'nope' not found")
    out = run_cli("train", SAMPLE_TEST, "--time-budget", "soon", home=tmp_path)
    assert out.returncode == 2 and "invalid duration 'soon'" in out.stderr
    out = run_cli("train", SAMPLE_TEST, "--task", "chat", home=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: no conversations found: expected JSON Lines with 'messages'")


def test_data_check_json_and_html(tmp_path):
    path = write_csv(tmp_path / "d.csv", sample_rows(per_label=30) + [("mail me at a.b@example.com", "neutral")])
    out = run_cli("data", "check", path, "--eval-file", SAMPLE_TEST, "--json", "--report", tmp_path / "r.html")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"]["read"] == 91
    assert report["labels"]["n_classes"] == 3
    assert report["pii"]["email"] == 1
    assert report["lengths"]["tokens"]["max_length"] == 128
    assert "<html" in (tmp_path / "r.html").read_text()


def test_train_predict_alias_show_json_flow(tmp_path, small_train_csv, small_test_csv):
    home = tmp_path / "home"
    out = run_cli("train", small_train_csv, "--eval-file", small_test_csv, "--name", "credit-risk", "--method",
                  "head", "--json", home=home)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (summary["model"], summary["method"], summary["rows"]) == ("credit-risk:1", "head", 60)
    assert run_cli("models", "alias", "credit-risk:1", "production", home=home).returncode == 0
    out = run_cli("predict", "credit-risk@production", "Shares tumble on fraud probe", "--json", home=home)
    pred = json.loads(out.stdout.strip().splitlines()[-1])
    assert pred["model"] == "credit-risk:1"
    assert pred["predictions"][0]["label"] in {"bearish", "bullish", "neutral"}
    show = json.loads(run_cli("models", "show", "credit-risk@production", "--json", home=home).stdout.splitlines()[-1])
    assert show["aliases"] == ["production"] and show["version"] == 1
    out = run_cli("eval", "credit-risk@production", small_test_csv, "--json", "--report", tmp_path / "e.html", home=home)
    evaluation = json.loads(out.stdout.strip().splitlines()[-1])
    assert evaluation["metrics"]["macro_f1"] == summary["metrics"]["macro_f1"]
    assert "<svg" in (tmp_path / "e.html").read_text()
