"""``examples/trust.sh``, the trust walk of the README, run as a new user runs it: every step's outcome checked
against the sample files it reads and the numbers it printed itself."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "tailor" / "sample_data"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SLICE_ROW = re.compile(r"  (\w+) +(\d+) +(\d\.\d{3})  \[(\d\.\d{3}), (\d\.\d{3})\] +(\d\.\d{3}) +- +"
                       r"(\d\.\d{3}|too small)")


def _steps(stdout: str) -> dict[str, str]:
    """The walk's output by step number: ``{"0": "...", "1": "...", ...}``."""
    parts = re.split(r"^== (\d+)\. .*$", ANSI.sub("", stdout), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _slices(report: str) -> dict[str, tuple]:
    """``value -> (n, accuracy, gap or None)`` from a bias report's slice table."""
    rows = {}
    for m in SLICE_ROW.finditer(report):
        rows[m.group(1)] = (int(m.group(2)), float(m.group(3)),
                            None if m.group(7) == "too small" else float(m.group(7)))
    return rows


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    work = tmp_path_factory.mktemp("trust") / "walk"
    env = {**os.environ, "TRUST_WORK": str(work), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("TAILOR_HOME", "TAILOR_DATABASE_URL", "TAILOR_MASTER_KEY", "TAILOR_MASTER_KEY_FILE"):
        env.pop(name, None)
    done = subprocess.run(["bash", "examples/trust.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)  # interleaved, as in a terminal
    assert done.returncode == 0, done.stdout[-6000:]
    return work, _steps(done.stdout), done.stdout


@pytest.mark.slow
def test_every_step_prints_its_heading_in_order(walk):
    _, steps, stdout = walk
    assert list(steps) == [str(n) for n in range(14)]
    assert stdout.endswith("s\n") and re.search(r"\ntrust walk done in \d+s\n$", stdout)


@pytest.mark.slow
def test_the_explanation_names_each_word_with_its_offsets_into_the_text(walk):
    work, steps, _ = walk
    prediction, = json.loads((work / "explain.json").read_text())["predictions"]
    text = prediction["text"]
    assert text == "my card was declined at the grocery store"
    tokens = prediction["explanation"]
    assert [t["token"] for t in tokens] == text.split()
    assert all(text[t["start"]:t["end"]] == t["token"] for t in tokens)
    assert set(prediction["scores"]) == set(Counter(r["label"] for r in _rows("bank_intents_train.csv")))
    strongest = sorted(tokens, key=lambda t: -t["weight"])
    assert strongest[0]["token"] in ("card", "declined")  # the words a reader would point at, not "the"
    shown = steps["2"].strip().splitlines()
    assert shown[0] == f"{prediction['label']}  {prediction['score']:.3f}  {text!r}"
    assert shown[1:] == [f"  {t['weight']:+.4f}  {t['token']!r} at [{t['start']}:{t['end']}]" for t in strongest]


def _rows(name: str) -> list[dict]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_shipped_bank_sample_is_as_its_readme_describes():
    train, pilot, test = (_rows(f"bank_intents_{part}.csv") for part in ("train", "pilot", "test"))
    domains = {r["label"]: r["domain"] for r in train}
    assert Counter(domains.values()) == {"banking": 10, "credit_cards": 10, "travel": 2}
    assert Counter(r["label"] for r in train) == {label: 10 for label in domains}
    assert Counter(r["label"] for r in test) == {label: 8 for label in domains}
    assert all(domains[r["label"]] == r["domain"] for r in test + pilot)
    assert Counter(r["label"] for r in pilot) == {label: 2 if d == "credit_cards" else 10 for label, d in
                                                  domains.items()}
    assert all(r in train for r in pilot) and not {r["text"] for r in train} & {r["text"] for r in test}


@pytest.mark.slow
def test_the_bias_report_scores_each_domain_of_the_test_file_and_flags_the_small_one(walk):
    _, steps, _ = walk
    sizes = Counter(r["domain"] for r in _rows("bank_intents_test.csv"))
    assert sizes == {"banking": 80, "credit_cards": 80, "travel": 16}
    for step in ("3", "7"):
        table = _slices(steps[step])
        assert {value: n for value, (n, _, _) in table.items()} == sizes
        assert table["travel"][2] is None  # under 30 rows: too small to judge, out of every gap
        best = max(acc for n, acc, _ in table.values() if n >= 30)
        for value in ("banking", "credit_cards"):
            assert table[value][2] == pytest.approx(best - table[value][1], abs=0.0011)
        largest = float(re.search(r"^largest gap: (\d\.\d{4})$", steps[step], re.M).group(1))
        assert largest == pytest.approx(max(table["banking"][2], table["credit_cards"][2]), abs=0.0011)
    assert re.search(r"^counterfactual: \d+ of \d+ texts with a protected term changed label", steps["3"], re.M)
    assert re.search(r"^  destination: \d+/\d+$", steps["3"], re.M)  # the user's own terms file was used


@pytest.mark.slow
def test_the_card_shows_the_version_and_its_slices(walk):
    work, steps, _ = walk
    card = (work / "card-1.md").read_text()
    assert card.startswith("---\nbase_model: sentence-transformers/all-MiniLM-L6-v2\n")
    assert "\n- name: bank-intents:1\n" in card
    largest = re.search(r"^largest gap: (\d\.\d{4})$", steps["3"], re.M).group(1)
    assert f"sliced by column domain. Largest accuracy gap to the best slice: {largest}." in steps["4"]
    assert "| domain | travel | 16 |" in steps["4"] and "too small to judge |" in steps["4"]


@pytest.mark.slow
def test_the_gate_refuses_version_1_with_its_failing_number_and_lets_the_fixed_version_2_through(walk):
    _, steps, _ = walk
    gap_1 = re.search(r"^largest gap: (\d\.\d{4})$", steps["3"], re.M).group(1)
    gap_2 = re.search(r"^largest gap: (\d\.\d{4})$", steps["7"], re.M).group(1)
    assert float(gap_1) > 0.10 >= float(gap_2)
    assert steps["6"].strip().splitlines() == [
        f"error: release gate: bank-intents:1 fails: largest slice gap {gap_1} > 0.10 (domain) "
        "(an admin may override with a reason)",
        "exit status 2"]
    assert steps["8"].strip().splitlines()[:2] == ["bank-intents@production → bank-intents:2",
                                                   "aliases: bank-intents@production → bank-intents:2"]


@pytest.mark.slow
def test_the_rotated_key_loses_nothing_and_the_old_key_is_refused(walk):
    work, steps, _ = walk
    old = re.search(r"master-1\.key \(mode 0600, fingerprint (\w{32})\)", steps["0"]).group(1)
    new = re.search(r"master-2\.key \(mode 0600, fingerprint (\w{32})\)", steps["10"]).group(1)
    assert f"re-wrapped the data keys of 1 tenant(s) under the master key {new}: default" in steps["10"]
    assert re.search(r"it starts with TLRENC and 0 of its lines", steps["9"])
    assert steps["11"].strip() == (
        f"exit status 1: error: the master key (fingerprint {old}) does not open the data keys of 1 tenant, whose "
        "data cannot be decrypted: default (1 file). Start with the master key they were wrapped with (tailor keys "
        "rotate-master changes it); nothing was changed")
    before = (work / "predictions-before.txt").read_text().splitlines()
    assert len(before) == 3 and all(re.fullmatch(r"\w+\t\d\.\d{4}", line) for line in before)
    assert (work / "predictions-after.txt").read_text().splitlines() == before
    assert (work / "content.csv").read_bytes() == (DATA / "bank_intents_test.csv").read_bytes()
    assert "the file's content is identical to the upload" in steps["12"]
    assert "the answers are identical" in steps["12"]


@pytest.mark.slow
def test_the_audit_log_holds_the_walks_changes_and_its_chain_verifies(walk):
    _, steps, _ = walk
    lines = steps["13"].strip().splitlines()
    assert re.fullmatch(r"trust walk done in \d+s", lines[-1]) and lines[-2] == ""
    rows, verify = lines[:-3], lines[-3]
    oldest_first = rows[::-1]
    assert [re.split(r"\s{2,}", row.strip())[4] for row in oldest_first] == [
        "train", "eval", "gate set", "models alias", "train", "eval", "models alias", "tenants create",
        "POST /v1/files", "keys rotate-master"]
    assert [re.split(r"\s{2,}", row.strip())[0] for row in oldest_first] == [str(n) for n in range(1, 11)]
    assert oldest_first[3].endswith("error: release gate: bank-intents:1 fails: largest slice gap "
                             + re.search(r"^largest gap: (\d\.\d{4})$", steps["3"], re.M).group(1)
                             + " > 0.10 (domain) (an admin may override with a reason)")
    assert re.fullmatch(rf"chain intact: {len(rows)} rows, head [0-9a-f]{{64}}", verify)
