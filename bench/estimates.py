"""Estimated against actual training time: ``tailor train`` on the sample data and the shared data sets,
each with its defaults, in a fresh storage root; prints one row per job and the error of each estimate.

    python bench/estimates.py                     # all jobs, on every usable core
    taskset -c 0,1 python bench/estimates.py      # on two cores
    python bench/estimates.py --only sample,sms_spam --chat

The estimate is the one the job prints before training (``estimate: ...``, kept in the version's lineage as
``timings.estimated_s``); the actual figure is the job's ``timings.total_s`` (from reading the data to the
published version). ``error`` is ``(estimated - actual) / actual``: negative when the estimate was short.
Run it on an idle machine: the target is every error within +-30%. The speed probe is cached per storage
root, so each run starts with an empty one (the base models are shared from ``~/.tailor/models`` when there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "src" / "tailor" / "sample_data"
SHARED = Path(os.environ.get("TAILOR_DATASETS", ROOT.parent / "shared" / "datasets"))

# name -> (training file, eval file or None, overrides, task)
JOBS = {
    "sample": (SAMPLE / "finance_sentiment_train.csv", SAMPLE / "finance_sentiment_test.csv", {}, "classify"),
    "clinc150": (SHARED / "clinc150" / "finance_train.csv", SHARED / "clinc150" / "finance_test.csv", {}, "classify"),
    "sms_spam": (SHARED / "sms_spam" / "train.csv", SHARED / "sms_spam" / "test.csv", {}, "classify"),
    "thucnews": (SHARED / "thucnews_titles" / "dev_small.csv", SHARED / "thucnews_titles" / "test_small.csv", {},
                 "classify"),
    "banking77": (SHARED / "banking77" / "train_small_20per_class.csv", SHARED / "banking77" / "test.csv", {},
                  "classify"),
}
CHAT_JOB = {"medquad-chat": (SAMPLE / "medquad_chat_train.jsonl", SAMPLE / "medquad_chat_test.jsonl", {}, "chat")}


def fresh_home() -> Path:
    """An empty storage root that shares the converted base models of ``~/.tailor`` (when there)."""
    home = Path(tempfile.mkdtemp(prefix="tailor-bench-estimates-"))
    for shared in ("models",):
        source = Path.home() / ".tailor" / shared
        if source.is_dir():
            (home / shared).symlink_to(source)
    return home


def run_job(name: str, train: Path, eval_file: Path | None, overrides: dict, task: str) -> dict:
    """Train one job and return its row: dataset, base, method, estimated s, actual s, error %."""
    from tailor.train.progress import RecordingReporter

    reporter = RecordingReporter()
    started = time.monotonic()
    if task == "chat":
        from tailor.train.chat_job import run_chat_job

        result = run_chat_job(train, eval_file=eval_file, name=f"bench-{name}", reporter=reporter, **overrides)
        method = "lora"
    else:
        from tailor.train.job import run_classification_job

        result = run_classification_job(train, eval_file=eval_file, name=f"bench-{name}", reporter=reporter,
                                        **overrides)
        method = result.method
    wall = time.monotonic() - started
    timings = result.timings
    estimated, actual = timings["estimated_s"], timings["total_s"]
    measured = {"data": timings.get("data_s"), "train+validation": timings.get("train_s"), "test": timings.get("eval_s")}
    measured["gate+save"] = round(actual - sum(v or 0 for v in measured.values()), 1)
    return {"dataset": name, "base": result.version.base_model, "method": method, "estimated_s": estimated,
            "actual_s": actual, "wall_s": round(wall, 1), "error_pct": round(100 * (estimated - actual) / actual, 1),
            "estimate": next((t for t, _ in reporter.messages if t.startswith("estimate: ")), ""),
            "actual_stages": measured}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated job names: " + ", ".join([*JOBS, *CHAT_JOB]))
    parser.add_argument("--chat", action="store_true", help="add the chat job (SmolLM2 LoRA on the sample)")
    args = parser.parse_args(argv)
    jobs = {**JOBS, **(CHAT_JOB if args.chat else {})}
    if args.only:
        wanted = args.only.split(",")
        unknown = [w for w in wanted if w not in {**JOBS, **CHAT_JOB}]
        if unknown:
            parser.error(f"unknown job(s): {', '.join(unknown)}")
        jobs = {k: v for k, v in {**JOBS, **CHAT_JOB}.items() if k in wanted}
    os.environ["TAILOR_HOME"] = str(fresh_home())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tailor.runtime import usable_cores

    print(f"storage root {os.environ['TAILOR_HOME']}, {usable_cores()} usable cores", flush=True)
    rows = []
    for name, (train, eval_file, overrides, task) in jobs.items():
        row = run_job(name, train, eval_file, overrides, task)
        rows.append(row)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in row["actual_stages"].items() if v is not None)
        print(f"{name}: {row['estimate']} | actual {row['actual_s']:.1f}s ({stages})", file=sys.stderr, flush=True)
    header = f"{'dataset':<14}{'base':<24}{'method':<8}{'estimated s':>12}{'actual s':>10}{'error %':>9}"
    print(header)
    for row in rows:
        print(f"{row['dataset']:<14}{row['base']:<24}{row['method']:<8}{row['estimated_s']:>12.1f}"
              f"{row['actual_s']:>10.1f}{row['error_pct']:>+9.1f}")
    worst = max(abs(r["error_pct"]) for r in rows)
    print(f"worst error {worst:.1f}% (target: within 30% on an idle machine)")
    out = ROOT / "bench" / "results" / "estimates.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cores": usable_cores(), "jobs": rows}, indent=2) + "\n")
    print(f"summary written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
