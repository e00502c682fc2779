"""``tailor predict --explain [--all-labels]``: each word's weight in the terminal (strongest first) and in
``--json``, and the usage error of ``--all-labels`` alone."""

import json
import os
import re
import subprocess
import sys

import pytest

from tailor.models.explain import split_units

TEXT = "Shares tumble after the fraud probe widens"


def _tailor(home, *args):
    env = dict(os.environ, TAILOR_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "tailor", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def home(head_artifact):
    """The storage root the session's head version ``head`` was trained in (its base graphs are built there)."""
    return next(p for p in head_artifact[0].parents if (p / "tailor.db").is_file())


def test_json_has_the_explanation_with_offsets(home):
    out = _tailor(home, "predict", "head", TEXT, "--explain", "--json")
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)["predictions"]
    assert set(row) == {"text", "label", "score", "scores", "explanation"}
    assert [(t["token"], t["start"], t["end"]) for t in row["explanation"]] == [
        (u.token, u.start, u.end) for u in split_units(TEXT)]
    plain = json.loads(_tailor(home, "predict", "head", TEXT, "--json").stdout)["predictions"][0]
    assert row["label"] == plain["label"] and row["scores"] == pytest.approx(plain["scores"], abs=1e-5)


def test_the_terminal_lists_words_strongest_first(home):
    out = _tailor(home, "predict", "head", TEXT, "--explain")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    label, score, text = lines[0].split("\t")
    assert text == TEXT and float(score) > 0
    assert lines[1] == f"  {label}: each word's weight (the probability lost without it), strongest first"
    rows = [re.fullmatch(r"    ([+-]\d\.\d{4})  (\S+)", line).groups() for line in lines[2:]]
    assert sorted(word for _, word in rows) == sorted(u.token for u in split_units(TEXT))
    weights = [abs(float(w)) for w, _ in rows]
    assert weights == sorted(weights, reverse=True)


def test_all_labels_and_its_usage_error(home):
    out = _tailor(home, "predict", "head", TEXT, "--explain", "--all-labels", "--json")
    [row] = json.loads(out.stdout)["predictions"]
    assert set(row["explanations"]) == set(row["scores"]) and row["explanation"] == row["explanations"][row["label"]]
    out = _tailor(home, "predict", "head", TEXT, "--all-labels")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --all-labels explains every label: give it with --explain"
