"""The README's curl and openai examples, run as written against a real server (from the repository root,
as a reader of the README would)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_block(marker: str, language: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker}:[^>]*-->\s*```{language}\n(.*?)```", text, re.S)
    assert found, f"README has no {language} block after <!-- {marker} -->"
    return found.group(1)


def test_the_readme_marks_its_examples():
    assert "curl -sf" in readme_block("curl-examples", "bash")
    assert "OpenAI(base_url=" in readme_block("openai-example", "python")
    assert "/aliases/prod/rollback" in readme_block("loop-example", "bash")


@pytest.mark.slow
def test_readme_curl_examples_work_as_written(server):
    script = readme_block("curl-examples", "bash")
    # The reader replaces the placeholder key with theirs; the URL stays as written but for the port.
    script = script.replace("TAILOR_URL=http://127.0.0.1:8000", f"TAILOR_URL={server.url}")
    script = script.replace("TAILOR_KEY=tk-...", f"TAILOR_KEY={server.key}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"label":' in done.stdout and "ft:minilm-l6:acme:tweets:ftjob-" in done.stdout
    assert "The job has successfully completed" in done.stdout


@pytest.mark.slow
def test_readme_loop_example_works_as_written(server):
    setup = "\n".join(line for line in readme_block("curl-examples", "bash").splitlines()[:2])
    script = setup.replace("TAILOR_URL=http://127.0.0.1:8000", f"TAILOR_URL={server.url}").replace(
        "TAILOR_KEY=tk-...", f"TAILOR_KEY={server.key}") + "\n" + readme_block("loop-example", "bash")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("answers 60 estimated accuracy 0.") and lines[0].endswith(("drift", "no_drift",
                                                                                          "insufficient_data"))
    assert lines[1] == "30 labels recorded"
    assert re.fullmatch(r"ft:minilm-l6:acme:loop:ftjob-\w+:2 on 30 labelled answers: \w+", lines[2])
    assert lines[3] == "canary {'version': 2, 'mode': 'canary', 'share': 0.2}"
    assert re.fullmatch(r"x-tailor-version: ft:minilm-l6:acme:loop:ftjob-\w+:[12]", lines[4].strip())
    assert lines[5:7] == ["prod -> 2", "prod -> 1"]
    history = lines[7:]
    assert [h.split(" by ")[0] for h in history] == ["set -> 1", "canary -> 1", "promote -> 2", "rollback -> 1"]
    assert history[-1].endswith(": complaints") and "acme/" in history[-1]


@pytest.mark.slow
def test_readme_openai_example_works_as_written(server):
    done = subprocess.run([sys.executable, "-c", readme_block("openai-example", "python")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TAILOR_URL": server.url, "TAILOR_KEY": server.key})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("succeeded ft:minilm-l6:acme::ftjob-")
    assert lines[-1] == "384"
