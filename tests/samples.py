"""Sample data helpers for tests: the tweets shipped with Tailor, and small CSV writers."""

from __future__ import annotations

import csv
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "tailor" / "sample_data"
SAMPLE_TRAIN = SAMPLE_DIR / "finance_sentiment_train.csv"
SAMPLE_TEST = SAMPLE_DIR / "finance_sentiment_test.csv"


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sample_rows(path: Path = SAMPLE_TRAIN, per_label: int | None = None) -> list[tuple[str, str]]:
    """Rows of a sample file, optionally the first ``per_label`` of each label (file order)."""
    with open(path, encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    if per_label is None:
        return rows
    taken: dict[str, int] = {}
    out = []
    for text, label in rows:
        if taken.get(label, 0) < per_label:
            taken[label] = taken.get(label, 0) + 1
            out.append((text, label))
    return out
