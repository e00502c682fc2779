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


def test_the_readme_marks_both_examples():
    assert "curl -sf" in readme_block("curl-examples", "bash")
    assert "OpenAI(base_url=" in readme_block("openai-example", "python")


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
def test_readme_openai_example_works_as_written(server):
    done = subprocess.run([sys.executable, "-c", readme_block("openai-example", "python")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TAILOR_URL": server.url, "TAILOR_KEY": server.key})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("succeeded ft:minilm-l6:acme::ftjob-")
    assert lines[-1] == "384"
