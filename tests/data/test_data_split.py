"""Stratified train/validation/test splits: sizes per class, determinism, disjoint parts."""

import pytest

from tailor.data.dataset import TextDataset
from tailor.data.split import stratified_split
from tailor.errors import UsageError

SIZES = {"a": 20, "b": 10, "c": 3, "d": 2, "e": 1}


def dataset(sizes: dict[str, int]) -> TextDataset:
    labels = [label for label, n in sizes.items() for _ in range(n)]
    return TextDataset(texts=[f"{label} {i}" for i, label in enumerate(labels)], labels=labels,
                       lines=list(range(2, len(labels) + 2)))


def test_sizes_per_class():
    split = stratified_split(dataset(SIZES), val_size=0.1, test_size=0.1, seed=0)
    assert split.train.label_counts() == {"a": 16, "b": 8, "c": 1, "d": 2, "e": 1}
    assert split.val.label_counts() == {"a": 2, "b": 1, "c": 1}
    assert split.test.label_counts() == {"a": 2, "b": 1, "c": 1}
    assert (len(split.train), len(split.val), len(split.test)) == (28, 4, 4)


def test_parts_are_disjoint_cover_everything_and_keep_file_order():
    split = stratified_split(dataset(SIZES), seed=3)
    lines = split.train.lines + split.val.lines + split.test.lines
    assert sorted(lines) == list(range(2, 38))
    assert len(set(lines)) == len(lines)
    for part in (split.train, split.val, split.test):
        assert part.lines == sorted(part.lines)


def test_same_seed_same_split_other_seed_other_split():
    ds = dataset(SIZES)
    assert stratified_split(ds, seed=1) == stratified_split(ds, seed=1)
    assert stratified_split(ds, seed=1).val.lines != stratified_split(ds, seed=2).val.lines


def test_no_test_part():
    split = stratified_split(dataset(SIZES), val_size=0.2, test_size=0)
    assert split.test is None
    assert split.val.label_counts() == {"a": 4, "b": 2, "c": 1}
    assert split.train.label_counts() == {"a": 16, "b": 8, "c": 2, "d": 2, "e": 1}


def test_large_shares_still_leave_a_training_row():
    split = stratified_split(dataset({"a": 4, "b": 3}), val_size=0.9, test_size=0.05)
    assert split.train.label_counts() == {"a": 1, "b": 1}
    assert split.val.label_counts() == {"a": 2, "b": 1}
    assert split.test.label_counts() == {"a": 1, "b": 1}


@pytest.mark.parametrize("val_size, test_size", [(0.5, 0.5), (-0.1, 0.1), (0.1, 1.2)])
def test_bad_shares_are_refused(val_size, test_size):
    with pytest.raises(UsageError) as info:
        stratified_split(dataset(SIZES), val_size=val_size, test_size=test_size)
    assert str(info.value) == ("val_size and test_size must be at least 0 and add up to less than 1 "
                               f"(got {val_size} and {test_size})")
