"""Shared fixtures: an isolated TAILOR_HOME, the shipped sample data, and small trained versions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samples import SAMPLE_TEST, sample_rows, write_csv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """Every test runs against a temporary storage root unless it sets its own."""
    home = tmp_path_factory.mktemp("tailor-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILOR_HOME", str(home))
        yield home


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """An empty storage root for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("TAILOR_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def small_train_csv(tmp_path_factory) -> Path:
    """60 real finance tweets, 20 per label."""
    return write_csv(tmp_path_factory.mktemp("data") / "small.csv", sample_rows(per_label=20))


@pytest.fixture(scope="session")
def small_test_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "small_test.csv", sample_rows(SAMPLE_TEST)[:40])


@pytest.fixture(scope="session")
def trained(session_home, small_train_csv, small_test_csv):
    """One registered version per method, trained briefly on the small set: {method: TrainResult}."""
    import tailor

    return {method: tailor.fine_tune(small_train_csv, eval_file=small_test_csv, name=f"small-{method}",
                                     method=method, epochs=2, batch_size=8, seed=0)
            for method in ("full", "lora", "head")}
