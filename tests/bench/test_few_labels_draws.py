"""The few-label benchmark's draws and pool (bench/few_labels.py): exact per-class counts, nested sizes, a pool
disjoint from the draw and the test texts, seeded; no setfit needed."""

import csv
import importlib
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def few_labels():
    sys.path.insert(0, str(BENCH))  # the bench scripts import each other by module name
    try:
        yield importlib.import_module("few_labels")
    finally:
        sys.path.remove(str(BENCH))


LABELS = ["a"] * 10 + ["b"] * 12 + ["c"] * 9
TEXTS = [f"text {i}" for i in range(len(LABELS))]


def test_draw_takes_exactly_k_rows_of_every_label(few_labels):
    drawn = few_labels.draw_per_class(LABELS, 8, seed=42)
    assert Counter(LABELS[i] for i in drawn) == {"a": 8, "b": 8, "c": 8}
    assert drawn == sorted(set(drawn))


def test_draw_is_reproducible_and_a_smaller_draw_lies_inside_a_larger(few_labels):
    assert few_labels.draw_per_class(LABELS, 4, seed=7) == few_labels.draw_per_class(LABELS, 4, seed=7)
    assert few_labels.draw_per_class(LABELS, 4, seed=7) != few_labels.draw_per_class(LABELS, 4, seed=8)
    assert set(few_labels.draw_per_class(LABELS, 4, seed=7)) <= set(few_labels.draw_per_class(LABELS, 8, seed=7))


def test_draw_refuses_a_label_with_too_few_rows(few_labels):
    with pytest.raises(ValueError, match="^label 'c' has 9 rows, fewer than 10 to draw$"):
        few_labels.draw_per_class(LABELS, 10, seed=0)


def test_pool_is_the_rest_without_drawn_or_test_texts_or_duplicates(few_labels):
    texts = [*TEXTS]
    texts[30] = texts[0]  # a duplicate of row 0
    texts[29] = texts[28]  # a duplicate inside the pool
    drawn = [0, 1, 10, 11, 22, 23]
    pool = few_labels.pool_rows(texts, LABELS, drawn, {"text 5"}, max_pool=None, seed=0)
    assert pool == [2, 3, 4, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 24, 25, 26, 27, 28]


def test_pool_cap_is_stratified_and_seeded(few_labels):
    drawn = few_labels.draw_per_class(LABELS, 2, seed=1)
    pool = few_labels.pool_rows(TEXTS, LABELS, drawn, set(), max_pool=10, seed=1)
    assert len(pool) == 10 and not set(pool) & set(drawn)
    assert Counter(LABELS[i] for i in pool) == {"a": 3, "b": 4, "c": 3}
    assert pool == few_labels.pool_rows(TEXTS, LABELS, drawn, set(), max_pool=10, seed=1)


def test_rows_are_written_with_or_without_labels(few_labels, tmp_path):
    few_labels.write_rows(tmp_path / "l.csv", TEXTS, LABELS, [0, 12])
    few_labels.write_rows(tmp_path / "u.csv", TEXTS, None, [0, 12])
    assert list(csv.reader(open(tmp_path / "l.csv", encoding="utf-8"))) == [["text", "label"], ["text 0", "a"],
                                                                             ["text 12", "b"]]
    assert list(csv.reader(open(tmp_path / "u.csv", encoding="utf-8"))) == [["text"], ["text 0"], ["text 12"]]


def test_targets_are_judged_on_the_best_recipe_and_its_pool_family(few_labels):
    def row(f1, wall):
        return {"macro_f1_mean": f1, "wall_s_mean": wall, "draws": [{"seed": 42, "macro_f1": f1, "wall_s": wall}]}

    datasets = {
        "x": {"sizes": {"8": {"head": row(0.50, 10), "head+pool": row(0.55, 20), "setfit": row(0.50, 60),
                              "contrastive": row(0.52, 30), "contrastive+aug": row(0.51, 40),
                              "head-no-prior": row(0.46, 10)}}},
        "y": {"sizes": {"8": {"head": row(0.70, 10), "head+pool": row(0.72, 20), "setfit": row(0.71, 60)}}},
    }
    comparison = few_labels.compare_size(datasets, "8")
    assert comparison == {
        "recipes": {"head": {"data_sets": 2, "delta_points_mean": -0.5, "time_ratio_setfit_over_tailor": 6.0},
                    "head-no-prior": {"data_sets": 1, "delta_points_mean": -4.0, "time_ratio_setfit_over_tailor": 6.0},
                    "head+pool": {"data_sets": 2, "delta_points_mean": 3.0, "time_ratio_setfit_over_tailor": 3.0},
                    "contrastive": {"data_sets": 1, "delta_points_mean": 2.0, "time_ratio_setfit_over_tailor": 2.0},
                    "contrastive+aug": {"data_sets": 1, "delta_points_mean": 1.0,
                                        "time_ratio_setfit_over_tailor": 1.5}},
        "best_recipe": "head+pool",
        "pool_gains": {"head": {"data_sets": 2, "gain_points_mean": 3.5}},
        "augmentation_gains": {"contrastive": {"data_sets": 1, "gain_points_mean": -1.0}},
        "prior_gains": {"head": {"data_sets": 1, "gain_points_mean": 4.0}},
    }
    assert few_labels.judge_targets({"8": comparison}) == {
        "few_shot_vs_setfit": {"8": {"recipe": "head+pool", "points": 3.0, "time_ratio": 3.0, "holds": True}},
        "few_shot_holds": True,
        "pool": {"family": "head", "gain_points": 3.5, "holds": True},
    }


def _cell(few_labels, *scores):
    """A system's cell from ``(seed, macro_f1, wall_s)`` draws."""
    return few_labels.summarise([{"seed": seed, "macro_f1": f1, "wall_s": wall} for seed, f1, wall in scores])


def _table(few_labels, sizes, once=None, pool_rows=2000, runs=("run",)):
    return {"base": "minilm-l6", "train_file": "train.csv", "test_file": "test.csv", "test_rows": 580,
            "pool_rows": pool_rows, "classes": 5, "once": once or {}, "sizes": sizes, "runs": list(runs)}


def test_a_merged_run_adds_draws_and_systems_and_replaces_the_seeds_it_ran_again(few_labels):
    earlier = _table(few_labels, {"8": {"head": _cell(few_labels, (42, 0.50, 10), (43, 0.40, 12)),
                                        "setfit": _cell(few_labels, (42, 0.45, 90))}},
                     once={"zero-shot": {"macro_f1": 0.3}}, runs=["first"])
    later = _table(few_labels, {"8": {"head": _cell(few_labels, (43, 0.60, 14), (44, 0.70, 12))},
                                "32": {"head": _cell(few_labels, (42, 0.8, 30))}},
                   once={"all-labels": {"macro_f1": 0.9}}, pool_rows=None, runs=["second"])
    merged = few_labels.merge_dataset(earlier, later)
    head = merged["sizes"]["8"]["head"]
    assert [(d["seed"], d["macro_f1"]) for d in head["draws"]] == [(42, 0.50), (43, 0.60), (44, 0.70)]
    assert (head["macro_f1_mean"], head["macro_f1_std"], head["wall_s_mean"]) == pytest.approx((0.6, 0.1, 12.0))
    assert merged["sizes"]["8"]["setfit"] == earlier["sizes"]["8"]["setfit"]
    assert merged["sizes"]["32"] == later["sizes"]["32"]
    assert merged["once"] == {"zero-shot": {"macro_f1": 0.3}, "all-labels": {"macro_f1": 0.9}}
    assert (merged["pool_rows"], merged["runs"]) == (2000, ["first", "second"])


def test_a_table_measured_on_other_rows_is_replaced_not_merged(few_labels, capsys):
    earlier = _table(few_labels, {"8": {"head": _cell(few_labels, (42, 0.5, 10))}})
    later = {**_table(few_labels, {"8": {"setfit": _cell(few_labels, (42, 0.4, 90))}}), "test_rows": 1000}
    assert few_labels.merge_dataset(earlier, later) is later
    assert capsys.readouterr().out.strip() == ("(the earlier table was measured with another test_rows: replaced, "
                                               "not merged)")


def test_the_best_recipe_is_judged_on_every_data_set_that_ran_setfit(few_labels):
    def row(f1):
        return _cell(few_labels, (42, f1, 10))

    datasets = {"x": {"sizes": {"8": {"head": row(0.50), "contrastive": row(0.60), "setfit": row(0.50)}}},
                "y": {"sizes": {"8": {"head": row(0.70), "setfit": row(0.69)}}}}
    comparison = few_labels.compare_size(datasets, "8")
    assert comparison["recipes"]["contrastive"]["delta_points_mean"] == 10.0  # one data set only
    assert comparison["best_recipe"] == "head"


def test_cells_merged_from_several_runs_are_compared_on_the_draws_both_ran(few_labels):
    sizes = {"8": {"head": _cell(few_labels, (42, 0.50, 10), (43, 0.30, 30)),
                   "head-no-prior": _cell(few_labels, (42, 0.45, 10)),
                   "setfit": _cell(few_labels, (42, 0.40, 100), (43, 0.40, 200), (44, 0.9, 300))}}
    comparison = few_labels.compare_size({"x": {"sizes": sizes}}, "8")
    assert comparison["recipes"]["head"] == {"data_sets": 1, "delta_points_mean": 0.0,  # seeds 42 and 43
                                             "time_ratio_setfit_over_tailor": 7.5}
    assert comparison["recipes"]["head-no-prior"]["delta_points_mean"] == 5.0  # seed 42 alone
    assert comparison["prior_gains"] == {"head": {"data_sets": 1, "gain_points_mean": 5.0}}
