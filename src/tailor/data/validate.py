"""Checks that a dataset can train a classifier, and which of its classes are too small."""

from __future__ import annotations

from tailor.data.dataset import TextDataset
from tailor.errors import DataError

MIN_SPLIT_ROWS = 3  # a class needs a row for each of train, validation and test
MIN_LEARN_ROWS = 8  # below this a class is rarely learned well
_UNIQUE_LABELS_MIN_ROWS = 10  # with fewer rows, all-distinct labels can be a genuine tiny dataset


def check_trainable(ds: TextDataset, *, what: str = "training data") -> None:
    """Refuse data that cannot train a classifier.

    Args:
        ds: the (cleaned) dataset.
        what: how messages name the data, e.g. ``"evaluation data"``.

    Raises:
        DataError: there are no rows, only one class, every label is unique (an id column), or no class has
            the rows to hold some out for validation.
    """
    counts = ds.label_counts()
    if not counts:
        raise DataError(f"no rows in {what}")
    check_label_count(counts, what=what)
    if len(counts) == len(ds) > _UNIQUE_LABELS_MIN_ROWS:
        raise DataError(f"every label is unique ({len(ds)} rows, {len(counts)} labels): is the label column an id?")
    if max(counts.values()) < MIN_SPLIT_ROWS:
        shown = ", ".join(f"{label!r} {n}" for label, n in sorted(counts.items()))
        raise DataError(f"too few rows in {what} to hold any out for validation: a class needs at least "
                        f"{MIN_SPLIT_ROWS} rows to be split, and none has ({shown})")


def check_label_count(label_counts: dict[str, int], *, what: str = "training data",
                      field: str | None = None) -> None:
    """Refuse labelled data with a single class: nothing to tell apart.

    Args:
        label_counts: rows per label.
        what: how the message names the data.
        field: the label column, named by the error.

    Raises:
        DataError: exactly one label, e.g. ``only one class ('spam') in training data: a classifier needs at
            least 2 labels``.
    """
    if len(label_counts) == 1:
        raise DataError(f"only one class ({next(iter(label_counts))!r}) in {what}: a classifier needs at least "
                        "2 labels", field=field)


def small_classes(label_counts: dict[str, int]) -> list[dict]:
    """Classes too small to split or to learn, smallest first.

    Args:
        label_counts: rows per label.

    Returns:
        ``[{"label", "count", "problem"}]`` where problem is ``"cannot be split (fewer than 3 rows)"`` or
        ``"too few to learn well (fewer than 8 rows)"``.
    """
    found = []
    for label, count in sorted(label_counts.items(), key=lambda item: (item[1], item[0])):
        if count < MIN_SPLIT_ROWS:
            problem = f"cannot be split (fewer than {MIN_SPLIT_ROWS} rows)"
        elif count < MIN_LEARN_ROWS:
            problem = f"too few to learn well (fewer than {MIN_LEARN_ROWS} rows)"
        else:
            continue
        found.append({"label": label, "count": count, "problem": problem})
    return found
