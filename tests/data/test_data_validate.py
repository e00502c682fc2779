"""Refusing data that cannot train a classifier, and naming classes that are too small."""

import pytest

from tailor.data.dataset import TextDataset
from tailor.data.validate import check_trainable, small_classes
from tailor.errors import DataError


def dataset(labels: list[str]) -> TextDataset:
    return TextDataset(texts=[f"text {i}" for i in range(len(labels))], labels=labels,
                       lines=list(range(2, len(labels) + 2)))


@pytest.mark.parametrize("labels, what, message", [
    ([], "training data", "no rows in training data"),
    (["spam"] * 5, "training data", "only one class ('spam') in training data: a classifier needs at least 2 labels"),
    (["ham"], "evaluation data", "only one class ('ham') in evaluation data: a classifier needs at least 2 labels"),
    ([f"id{i}" for i in range(50)], "training data",
     "every label is unique (50 rows, 50 labels): is the label column an id?"),
    (["a", "a", "b"], "training data", "too few rows in training data to hold any out for validation: a class needs "
                                       "at least 3 rows to be split, and none has ('a' 2, 'b' 1)"),
    ([f"l{i}" for i in range(10)], "the feedback", "too few rows in the feedback to hold any out for validation: "
     "a class needs at least 3 rows to be split, and none has ('l0' 1, 'l1' 1, 'l2' 1, 'l3' 1, 'l4' 1, 'l5' 1, "
     "'l6' 1, 'l7' 1, 'l8' 1, 'l9' 1)"),
])
def test_untrainable_data_is_refused(labels, what, message):
    with pytest.raises(DataError) as info:
        check_trainable(dataset(labels), what=what)
    assert str(info.value) == message


@pytest.mark.parametrize("labels", [["a", "a", "a", "b"], ["a", "b", "b", "b"] + [f"l{i}" for i in range(10)]])
def test_small_but_usable_data_passes(labels):
    assert check_trainable(dataset(labels)) is None


def test_small_classes_smallest_first():
    counts = {"big": 50, "seven": 7, "two": 2, "one": 1, "eight": 8, "three": 3}
    assert small_classes(counts) == [
        {"label": "one", "count": 1, "problem": "cannot be split (fewer than 3 rows)"},
        {"label": "two", "count": 2, "problem": "cannot be split (fewer than 3 rows)"},
        {"label": "three", "count": 3, "problem": "too few to learn well (fewer than 8 rows)"},
        {"label": "seven", "count": 7, "problem": "too few to learn well (fewer than 8 rows)"},
    ]
