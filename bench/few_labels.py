"""Few labels: Tailor's few-shot recipes beside SetFit (the ``setfit`` package, default settings).

For each data set, 8 and 32 labelled rows per class are drawn from the training file with fixed seeds
(several draws); the rest of the training file is the unlabelled pool. Per draw, each system trains on the
same rows from the same base model and is scored on the same test file with the same code
(:func:`tailor.eval.metrics.classification_metrics`): Tailor's ``head`` and ``contrastive`` methods, each
with and without the pool (``unlabeled=``) and the label-name prior (``label_prior=0``), ``contrastive`` with
augmented copies (``augment=``), and SetFit.
Tailor's zero-shot classifier (label names only) and its default recipe on all the labels run once per data
set. The script prints, per data set and size,
macro-F1 mean ± spread over the draws and mean wall seconds, then the ratios and whether the issue's targets
hold; the summary goes to ``bench/results/few_labels.json``.

Usage::

    .venv/bin/python bench/few_labels.py [--datasets twitter medical thucnews] [--sizes 8 32] [--draws 3]
        [--first-draw 0] [--merge]   # add cells to the summary on disk, judged over the whole table
        [--systems head head-no-prior head+pool contrastive contrastive-no-prior contrastive+pool
                   contrastive+aug zero-shot all-labels setfit]
        [--max-pool 2000] [--max-test N] [--max-train 2000] [--data-dir DIR] [--keep-going]
        [--setfit-max-steps N] [--setfit-num-iterations N]   # departures from SetFit's defaults
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tailor  # noqa: F401  (first: it sets OMP_WAIT_POLICY before PyTorch loads, for both sides alike)
from classify_vs_trainer import REPO_ROOT, write_summary, write_training_subsample
from peer_trainer import read_texts_labels

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "few_labels.json"
FIRST_SEED = 42  # draw i uses seed FIRST_SEED + i, for the draw, the pool, Tailor and SetFit
TARGET_FEW_SHOT_POINTS = 2.0  # best few-shot recipe - SetFit, macro-F1 points, mean over data sets, each size
TARGET_POOL_POINTS = 2.0  # with pool - without, at 8 per class, mean over data sets
POOL_SIZE = 8  # the size the pool target is judged at


@dataclass(frozen=True)
class FewLabelDataset:
    """A data set: its folder, the training file (draws and pool come from it), the test file, the base."""

    folder: str
    train_file: str
    test_file: str
    base: str


DATASETS = {
    "twitter": FewLabelDataset("twitter_financial_news_sentiment", "train.csv", "test.csv", "minilm-l6"),
    "medical": FewLabelDataset("medical_abstracts", "train.csv", "test.csv", "minilm-l6"),
    "thucnews": FewLabelDataset("thucnews_titles", "dev.csv", "test_small.csv", "me5-small"),
    # optional, behind --datasets
    "clinc-finance": FewLabelDataset("clinc150", "finance_train.csv", "finance_test.csv", "minilm-l6"),
    "sms": FewLabelDataset("sms_spam", "train.csv", "test.csv", "minilm-l6"),
    "medical-zh": FewLabelDataset("chinese_medical_dialogue", "dept_train.csv", "dept_test.csv", "me5-small"),
}
DEFAULT_DATASETS = ("twitter", "medical", "thucnews")

# Tailor's few-shot recipes: (method, uses the pool, augmented copies per row, label_prior: None for the
# default). Each trains on the drawn rows; the -no-prior ones start their head from random weights.
AUGMENT_COPIES = 4
FEW_SHOT_RECIPES = {
    "head": ("head", False, 0, None),
    "head-no-prior": ("head", False, 0, 0.0),
    "head+pool": ("head", True, 0, None),
    "contrastive": ("contrastive", False, 0, None),
    "contrastive-no-prior": ("contrastive", False, 0, 0.0),
    "contrastive+pool": ("contrastive", True, 0, None),
    "contrastive+aug": ("contrastive", False, AUGMENT_COPIES, None),
}
# what each add-on's gain compares: (recipe with it, recipe without it), per method family
ADD_ONS = {"pool": ("{}+pool", "{}"), "aug": ("{}+aug", "{}"), "prior": ("{}", "{}-no-prior")}
PER_DATASET_SYSTEMS = ("zero-shot", "all-labels")  # run once per data set, not per draw
SYSTEMS = (*FEW_SHOT_RECIPES, *PER_DATASET_SYSTEMS, "setfit")


class SystemUnavailable(Exception):
    """A system this checkout does not have yet (an unknown method or keyword, no ``tailor.zero_shot``)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DEFAULT_DATASETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 32], help="labelled rows per class")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws per size (mean and spread)")
    parser.add_argument("--first-draw", type=int, default=0,
                        help="index of the first draw (seed 42 + index), to add draws to a --merge'd table")
    parser.add_argument("--merge", action="store_true",
                        help="add this run's cells to bench/results/few_labels.json (a cell run again is "
                             "replaced draw by draw) and judge the targets over the whole table")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--max-pool", type=int, default=2000,
                        help="stratified, seeded cap on the unlabelled pool (0: no cap)")
    parser.add_argument("--max-test", type=int, help="stratified, seeded cap on test rows (default: whole file)")
    parser.add_argument("--max-train", type=int, default=2000,
                        help="stratified, seeded cap on the all-labels run's training rows (0: no cap)")
    parser.add_argument("--setfit-max-steps", type=int,
                        help="DEPARTURE from SetFit's defaults: cap its contrastive steps (default: none)")
    parser.add_argument("--setfit-num-iterations", type=int,
                        help="DEPARTURE from SetFit's defaults: pairs per row and kind, as SetFit 0.x's default "
                             "of 20 (default: none, SetFit 1.x's oversampling of every pair)")
    parser.add_argument("--keep-going", action="store_true",
                        help="skip a system after any error (printed), not only a UsageError")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("TAILOR_DATASETS", REPO_ROOT.parent / "shared" / "datasets")),
                        help="folder holding the datasets (default: $TAILOR_DATASETS or ../shared/datasets)")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.draws < 1 or args.first_draw < 0:
        parser.error("--sizes and --draws must be at least 1, --first-draw at least 0")
    return args


# ---- draws and pool --------------------------------------------------------------------------------------


def draw_per_class(labels: list[str], per_class: int, seed: int) -> list[int]:
    """Row indices of ``per_class`` rows of every label, drawn with ``seed``.

    Each label's rows are shuffled with ``random.Random(seed)`` and the first ``per_class`` taken, so with one
    seed a smaller draw is part of a larger one (8 per class lie inside 32 per class).

    Returns:
        Sorted row indices, exactly ``per_class`` per label.

    Raises:
        ValueError: a label has fewer than ``per_class`` rows.
    """
    rng = random.Random(seed)
    drawn = []
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        if len(rows) < per_class:
            raise ValueError(f"label {label!r} has {len(rows)} rows, fewer than {per_class} to draw")
        rng.shuffle(rows)
        drawn += rows[:per_class]
    return sorted(drawn)


def pool_rows(texts: list[str], labels: list[str], drawn: list[int], exclude_texts: set[str],
              max_pool: int | None, seed: int) -> list[int]:
    """Row indices of the unlabelled pool: the training rows not drawn, without a text that was drawn or is in
    ``exclude_texts`` (the test file's), one row per distinct text, then a stratified, seeded subsample of
    ``max_pool`` rows (by the labels the pool hides).

    Returns:
        Sorted row indices.
    """
    from sklearn.model_selection import train_test_split

    taken = set(drawn)
    excluded = exclude_texts | {texts[i] for i in drawn}
    rows, seen = [], set()
    for i, text in enumerate(texts):
        if i in taken or text in excluded or text in seen:
            continue
        seen.add(text)
        rows.append(i)
    if max_pool and len(rows) > max_pool:
        rows, _ = train_test_split(rows, train_size=max_pool, stratify=[labels[i] for i in rows], random_state=seed)
    return sorted(rows)


def write_rows(path: Path, texts: list[str], labels: list[str] | None, rows: list[int]) -> Path:
    """Write the given rows as CSV: ``text,label``, or ``text`` alone when ``labels`` is None."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"] if labels is None else ["text", "label"])
        for i in rows:
            writer.writerow([texts[i]] if labels is None else [texts[i], labels[i]])
    return path


# ---- systems ---------------------------------------------------------------------------------------------


def tailor_outcome(result, start: float) -> dict:
    return {"wall_s": round(time.perf_counter() - start, 1), "macro_f1": result.metrics["macro_f1"],
            "accuracy": result.metrics["accuracy"], "method": getattr(result, "method", None)}


def call_tailor(function, *args, **kwargs) -> dict:
    """Call a Tailor training entry point and time it; a UsageError (a method or keyword this checkout does
    not know yet) becomes :class:`SystemUnavailable`."""
    from tailor.errors import UsageError

    start = time.perf_counter()
    try:
        result = function(*args, **kwargs)
    except UsageError as exc:
        raise SystemUnavailable(str(exc)) from None
    return tailor_outcome(result, start)


def run_few_shot_recipe(recipe: str, draw_csv: Path, pool_csv: Path, test_csv: Path, name: str, base: str,
                        seed: int) -> dict:
    """``tailor.fine_tune`` on the drawn rows with the recipe's method, the pool when it uses one, and its
    augmented copies."""
    import tailor

    method, uses_pool, augment, label_prior = FEW_SHOT_RECIPES[recipe]
    extra = {"unlabeled": str(pool_csv)} if uses_pool else {}
    if augment:
        extra["augment"] = augment
    if label_prior is not None:
        extra["label_prior"] = label_prior
    return call_tailor(tailor.fine_tune, str(draw_csv), eval_file=str(test_csv), name=name, method=method,
                       base=base, seed=seed, **extra)


def run_zero_shot(labels: list[str], test_csv: Path, name: str, base: str) -> dict:
    """``tailor.zero_shot`` from the label names, scored on the test file."""
    import tailor

    if not hasattr(tailor, "zero_shot"):
        raise SystemUnavailable("tailor has no zero_shot yet")
    return call_tailor(tailor.zero_shot, labels, eval_file=str(test_csv), name=name, base=base)


def run_all_labels(train_csv: Path, test_csv: Path, name: str, base: str) -> dict:
    """Tailor's default recipe (only the base set) on the whole (capped) training file."""
    import tailor

    return call_tailor(tailor.fine_tune, str(train_csv), eval_file=str(test_csv), name=name, base=base,
                       seed=FIRST_SEED)


def run_setfit(draw_csv: Path, test_csv: Path, base_dir: str, seed: int, max_steps: int | None,
               num_iterations: int | None) -> dict:
    """SetFit with its defaults on the drawn rows, on the same base directory; see :mod:`setfit_peer`."""
    import torch

    import setfit_peer
    from tailor.runtime import usable_cores

    torch.set_num_threads(usable_cores())  # the same cores as Tailor's jobs use
    result = setfit_peer.train_and_evaluate(draw_csv, test_csv, base_dir, seed, max_steps, num_iterations)
    return {"wall_s": round(result.wall_s, 1), "macro_f1": result.metrics["macro_f1"],
            "accuracy": result.metrics["accuracy"], "pooling": result.pooling, "settings": result.settings}


# ---- one data set ----------------------------------------------------------------------------------------


class Runner:
    """Runs the selected systems, remembering which turned out unavailable so each is tried once."""

    def __init__(self, systems: list[str], keep_going: bool = False):
        self.systems = list(systems)
        self.keep_going = keep_going
        self.unavailable: dict[str, str] = {}

    def wants(self, system: str) -> bool:
        return system in self.systems and system not in self.unavailable

    def run(self, system: str, function, *args, **kwargs) -> dict | None:
        """``function(*args, **kwargs)``'s outcome, or None (with a printed note) if the system is missing."""
        if not self.wants(system):
            return None
        try:
            outcome = function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only with --keep-going; re-raised otherwise
            if not (isinstance(exc, SystemUnavailable) or self.keep_going):
                raise
            self.unavailable[system] = f"{type(exc).__name__}: {exc}"
            print(f"  note: skipping {system} from now on: {self.unavailable[system]}", flush=True)
            return None
        print(f"  {system:<18} macro-F1 {outcome['macro_f1']:.4f}  {outcome['wall_s']:>7.1f}s", flush=True)
        return outcome


def summarise(draws: list[dict]) -> dict:
    """Mean and sample standard deviation of macro-F1 over the draws, and mean wall seconds."""
    f1 = [d["macro_f1"] for d in draws]
    return {"macro_f1_mean": statistics.fmean(f1), "macro_f1_std": statistics.stdev(f1) if len(f1) > 1 else 0.0,
            "wall_s_mean": round(statistics.fmean(d["wall_s"] for d in draws), 1), "draws": draws}


def draw_seeds(args) -> list[int]:
    """The seeds of this run's draws: draw i (from ``--first-draw``) uses seed FIRST_SEED + i."""
    return [FIRST_SEED + draw for draw in range(args.first_draw, args.first_draw + args.draws)]


def run_size(name: str, spec: FewLabelDataset, per_class: int, data: dict, args, runner: Runner,
             workdir: Path) -> dict:
    """Every per-draw system at one size, over ``args.draws`` seeded draws; ``{system: summary}``."""
    texts, labels = data["texts"], data["labels"]
    per_system: dict[str, list[dict]] = {}
    for seed in draw_seeds(args):
        drawn = draw_per_class(labels, per_class, seed)
        pool = pool_rows(texts, labels, drawn, data["test_texts"], args.max_pool or None, seed)
        draw_csv = write_rows(workdir / f"{name}-{per_class}-{seed}-labelled.csv", texts, labels, drawn)
        pool_csv = write_rows(workdir / f"{name}-{per_class}-{seed}-pool.csv", texts, None, pool)
        print(f"-- {name}: {per_class} per class, draw {seed - FIRST_SEED + 1}/{args.first_draw + args.draws} "
              f"(seed {seed}): {len(drawn)} labelled, {len(pool)} in the pool", flush=True)
        for recipe in FEW_SHOT_RECIPES:
            outcome = runner.run(recipe, run_few_shot_recipe, recipe, draw_csv, pool_csv, data["test_csv"],
                                 f"fl-{name}-{recipe.replace('+', '-')}-{per_class}", spec.base, seed)
            if outcome:
                per_system.setdefault(recipe, []).append({"seed": seed, **outcome})
        outcome = runner.run("setfit", run_setfit, draw_csv, data["test_csv"], data["base_dir"], seed,
                             args.setfit_max_steps, args.setfit_num_iterations)
        if outcome:
            per_system.setdefault("setfit", []).append({"seed": seed, **outcome})
        data["pool_rows"] = len(pool)
    return {system: summarise(draws) for system, draws in per_system.items()}


def load_dataset_files(name: str, spec: FewLabelDataset, args, workdir: Path) -> dict:
    """The training rows, the (capped) test file and its texts, and the resolved base directory."""
    from tailor.catalog import resolve_base

    folder = args.data_dir / spec.folder
    texts, labels = read_texts_labels(folder / spec.train_file)
    test_csv = write_training_subsample(folder / spec.test_file, args.max_test, workdir / f"{name}-test.csv")
    test_texts, test_labels = read_texts_labels(test_csv)
    start = time.perf_counter()
    base_dir = resolve_base(spec.base).path  # me5-small is converted here, once, outside every timing
    print(f"\n== {name}: {len(texts)} training rows, {len(set(labels))} classes, test {len(test_texts)} rows "
          f"({test_csv.name}), base {spec.base} ready in {time.perf_counter() - start:.1f}s", flush=True)
    return {"texts": texts, "labels": labels, "test_csv": test_csv, "test_texts": set(test_texts),
            "test_rows": len(test_texts), "base_dir": base_dir}


def run_dataset(name: str, args, runner: Runner, workdir: Path) -> dict:
    """Zero-shot and all-labels once, then every size's draws; the data set's summary."""
    spec = DATASETS[name]
    data = load_dataset_files(name, spec, args, workdir)
    label_set = sorted(set(data["labels"]))
    once = {}
    outcome = runner.run("zero-shot", run_zero_shot, label_set, data["test_csv"], f"fl-{name}-zero-shot", spec.base)
    if outcome:
        once["zero-shot"] = outcome
    if runner.wants("all-labels"):
        train_csv = write_training_subsample(args.data_dir / spec.folder / spec.train_file, args.max_train or None,
                                             workdir / f"{name}-all-labels.csv")
        outcome = runner.run("all-labels", run_all_labels, train_csv, data["test_csv"], f"fl-{name}-all-labels",
                             spec.base)
        if outcome:
            once["all-labels"] = {**outcome, "train_rows": len(read_texts_labels(train_csv)[0])}
    sizes = {str(k): run_size(name, spec, k, data, args, runner, workdir) for k in args.sizes}
    return {"base": spec.base, "train_file": spec.train_file, "test_file": spec.test_file,
            "train_rows": len(data["texts"]), "test_rows": data["test_rows"], "classes": len(label_set),
            "pool_rows": data.get("pool_rows"), "once": once, "sizes": sizes,
            "runs": [{"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "load_average_1m": round(os.getloadavg()[0], 2), "sizes": [str(k) for k in args.sizes],
                      "draws": draw_seeds(args),
                      "systems": list(args.systems)}]}


# the settings a data set's cells must share to be merged into one table
SAME_TABLE_KEYS = ("base", "train_file", "test_file", "test_rows", "pool_rows", "classes")


def merge_dataset(previous: dict | None, new: dict) -> dict:
    """A data set's cells from an earlier run (``previous``) with this run's (``new``): a system run again at a
    size keeps its earlier draws of other seeds and takes this run's draws of the same seeds, and its mean and
    spread are recomputed over them; ``once`` systems run again are replaced. A previous table measured with
    other settings (:data:`SAME_TABLE_KEYS`, e.g. another ``--max-test`` or ``--max-pool``) is dropped."""
    if previous is None:
        return new
    changed = [key for key in SAME_TABLE_KEYS  # a run without draws has no pool_rows
               if None not in (previous.get(key), new.get(key)) and previous[key] != new[key]]
    if changed:
        print(f"(the earlier table was measured with another {', '.join(changed)}: replaced, not merged)")
        return new
    sizes = {size: dict(systems) for size, systems in previous["sizes"].items()}
    for size, systems in new["sizes"].items():
        for system, cell in systems.items():
            earlier = sizes.setdefault(size, {}).get(system, {"draws": []})["draws"]
            seeds = {draw["seed"] for draw in cell["draws"]}
            draws = sorted([d for d in earlier if d["seed"] not in seeds] + cell["draws"], key=lambda d: d["seed"])
            sizes[size][system] = summarise(draws)
    return {**new, "pool_rows": new.get("pool_rows") or previous.get("pool_rows"),
            "once": {**previous["once"], **new["once"]}, "sizes": sizes,
            "runs": previous.get("runs", []) + new["runs"]}


# ---- comparisons -----------------------------------------------------------------------------------------


def points(a: float, b: float) -> float:
    return round(100 * (a - b), 2)


def paired(cell: dict, other: dict) -> tuple[dict, dict] | None:
    """Two systems' cells restricted to the draws (seeds) both ran, re-summarised, so that a cell merged from
    more runs is compared on the same draws; None when they share none."""
    seeds = {d["seed"] for d in cell["draws"]} & {d["seed"] for d in other["draws"]}
    if not seeds:
        return None
    return tuple(summarise([d for d in c["draws"] if d["seed"] in seeds]) for c in (cell, other))


def compare_size(datasets: dict, size: str) -> dict:
    """At one size, over the data sets that ran both (on the draws both ran, :func:`paired`): each recipe's
    mean macro-F1 gap to SetFit and its time ratio (SetFit's summed mean wall seconds / the recipe's), the best
    recipe (highest mean gap), and the gains of the pool and of augmentation (:func:`add_on_gains`)."""
    recipes = {}
    for recipe in FEW_SHOT_RECIPES:
        pairs = [both for d in datasets.values() if {recipe, "setfit"} <= d["sizes"].get(size, {}).keys()
                 and (both := paired(d["sizes"][size][recipe], d["sizes"][size]["setfit"]))]
        if pairs:
            recipes[recipe] = {
                "data_sets": len(pairs),
                "delta_points_mean": round(statistics.fmean(points(r["macro_f1_mean"], s["macro_f1_mean"])
                                                            for r, s in pairs), 2),
                "time_ratio_setfit_over_tailor": round(sum(s["wall_s_mean"] for _, s in pairs)
                                                       / sum(r["wall_s_mean"] for r, _ in pairs), 2),
            }
    widest = max((row["data_sets"] for row in recipes.values()), default=0)
    best = max((r for r in recipes if recipes[r]["data_sets"] == widest),  # judged on every data set that ran
               key=lambda r: recipes[r]["delta_points_mean"], default=None)
    return {"recipes": recipes, "best_recipe": best, "pool_gains": add_on_gains(datasets, size, "pool"),
            "augmentation_gains": add_on_gains(datasets, size, "aug"),
            "prior_gains": add_on_gains(datasets, size, "prior")}


def add_on_gains(datasets: dict, size: str, add_on: str) -> dict:
    """``{family: {"data_sets", "gain_points_mean"}}``: what the add-on (:data:`ADD_ONS`: ``<family>+pool``
    over ``<family>``, ``<family>`` over ``<family>-no-prior``...) gains at one size, mean over the data sets
    that ran both."""
    found = {}
    for family in ("head", "contrastive"):
        recipe, without = (pattern.format(family) for pattern in ADD_ONS[add_on])
        gains = [points(both[0]["macro_f1_mean"], both[1]["macro_f1_mean"]) for d in datasets.values()
                 if {without, recipe} <= d["sizes"].get(size, {}).keys()
                 and (both := paired(d["sizes"][size][recipe], d["sizes"][size][without]))]
        if gains:
            found[family] = {"data_sets": len(gains), "gain_points_mean": round(statistics.fmean(gains), 2)}
    return found


def judge_targets(comparisons: dict) -> dict:
    """The issue's targets from the per-size comparisons: the best recipe at least 2 points above SetFit and
    faster, at every size; the pool at least +2 points at 8 per class, for the family (head or contrastive)
    of the best recipe at that size."""
    few_shot = {}
    for size, comparison in comparisons.items():
        best = comparison["best_recipe"]
        if best is None:
            continue
        row = comparison["recipes"][best]
        few_shot[size] = {"recipe": best, "points": row["delta_points_mean"],
                          "time_ratio": row["time_ratio_setfit_over_tailor"],
                          "holds": row["delta_points_mean"] >= TARGET_FEW_SHOT_POINTS
                          and row["time_ratio_setfit_over_tailor"] > 1}
    targets = {"few_shot_vs_setfit": few_shot,
               "few_shot_holds": bool(few_shot) and all(v["holds"] for v in few_shot.values())}
    comparison = comparisons.get(str(POOL_SIZE))
    if comparison and comparison["best_recipe"] and comparison["pool_gains"]:
        family = FEW_SHOT_RECIPES[comparison["best_recipe"]][0]
        gain = comparison["pool_gains"].get(family)
        if gain:
            targets["pool"] = {"family": family, "gain_points": gain["gain_points_mean"],
                               "holds": gain["gain_points_mean"] >= TARGET_POOL_POINTS}
    return targets


# ---- printing --------------------------------------------------------------------------------------------


def format_dataset(name: str, result: dict) -> str:
    """Per size a table: system, macro-F1 mean ± std over the draws, mean wall seconds."""
    lines = []
    for size, systems in result["sizes"].items():
        lines += [f"\n{name} ({result['base']}), {size} per class, test {result['test_rows']} rows",
                  f"{'system':<20}{'macro-F1':>10}{'± std':>9}{'draws':>7}{'wall s':>9}"]
        for system, row in systems.items():
            lines.append(f"{system:<20}{row['macro_f1_mean']:>10.4f}{row['macro_f1_std']:>9.4f}"
                         f"{len(row['draws']):>7}{row['wall_s_mean']:>9.1f}")
        for system, row in result["once"].items():
            lines.append(f"{system:<20}{row['macro_f1']:>10.4f}{'':>9}{'once':>7}{row['wall_s']:>9.1f}")
    return "\n".join(lines)


def format_comparisons(comparisons: dict, targets: dict) -> str:
    verdict = {True: "holds", False: "MISSED"}
    lines = ["\n== over the data sets"]
    for size, comparison in comparisons.items():
        for recipe, row in comparison["recipes"].items():
            ratio = row["time_ratio_setfit_over_tailor"]
            lines.append(f"{size:>3} per class  {recipe:<18} - setfit: {row['delta_points_mean']:+6.2f} points "
                         f"(mean of {row['data_sets']}), time ratio setfit/tailor {ratio:.2f}x")
        for add_on in ("pool", "augmentation", "prior"):
            for recipe, row in comparison.get(f"{add_on}_gains", {}).items():
                lines.append(f"{size:>3} per class  {add_on} gain {recipe}: {row['gain_points_mean']:+.2f} points")
    for size, row in targets["few_shot_vs_setfit"].items():
        lines.append(f"target: best recipe at {size} per class ({row['recipe']}) >= +{TARGET_FEW_SHOT_POINTS:g} "
                     f"points over SetFit in less time: {row['points']:+.2f}, {row['time_ratio']:.2f}x "
                     f"[{verdict[row['holds']]}]")
    if "pool" in targets:
        pool = targets["pool"]
        lines.append(f"target: pool at {POOL_SIZE} per class ({pool['family']}) >= +{TARGET_POOL_POINTS:g} points: "
                     f"{pool['gain_points']:+.2f} [{verdict[pool['holds']]}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print each data set's tables and the targets, write the JSON summary."""
    args = parse_args(argv)
    summary = {"machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                           "platform": platform.platform()},
               "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "datasets": {}}
    if args.merge and RESULTS_PATH.is_file():
        summary["datasets"] = json.loads(RESULTS_PATH.read_text())["datasets"]
    runner = Runner(args.systems, args.keep_going)
    with tempfile.TemporaryDirectory(prefix="tailor-bench-few-") as tmp:
        os.environ["TAILOR_HOME"] = str(Path(tmp) / "home")
        for name in args.datasets:
            result = merge_dataset(summary["datasets"].get(name), run_dataset(name, args, runner, Path(tmp)))
            summary["datasets"][name] = result
            print(format_dataset(name, result), flush=True)
            judge(summary, runner)
            write_summary(summary, RESULTS_PATH)  # after every data set: a stopped run keeps the finished ones
    print(format_comparisons(summary["comparisons"], summary["targets"]))
    return summary


def judge(summary: dict, runner: Runner) -> None:
    """The comparisons and targets over every size in the table, into ``summary``."""
    sizes = sorted({size for result in summary["datasets"].values() for size in result["sizes"]}, key=int)
    summary["comparisons"] = {size: compare_size(summary["datasets"], size) for size in sizes}
    summary["targets"] = judge_targets(summary["comparisons"])
    summary["skipped"] = runner.unavailable


if __name__ == "__main__":
    main()
