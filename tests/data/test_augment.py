"""Text augmentation (tailor.data.augment): what each edit does, which texts are left alone, and the copies'
labels, lines and columns."""

import random
from collections import Counter

import pytest

from tailor.data.augment import OPERATIONS, augment_dataset, augment_text
from tailor.data.dataset import TextDataset

TEXT = "the bank raised its rates again this quarter after the vote"  # 11 words: one edit at rate 0.1
CHINESE = "央行本季度再次上调利率"  # 11 characters, no spaces


@pytest.mark.parametrize("seed", range(5))
def test_each_edit_changes_the_words_as_described(seed):
    words = TEXT.split()
    swap = augment_text(TEXT, "swap", 0.1, random.Random(seed)).split()
    assert Counter(swap) == Counter(words) and sum(a != b for a, b in zip(swap, words)) in (0, 2)
    delete = augment_text(TEXT, "delete", 0.1, random.Random(seed)).split()
    assert len(delete) == 10 and not Counter(delete) - Counter(words)
    insert = augment_text(TEXT, "insert", 0.1, random.Random(seed)).split()
    assert len(insert) == 12 and set(insert) == set(words)
    crop = augment_text(TEXT, "crop", 0.3, random.Random(seed))  # round(0.3 * 11) = 3 words cut, in one span
    kept = crop.split()
    assert len(kept) == 8
    start = next((i for i, (a, b) in enumerate(zip(kept, words)) if a != b), 8)
    assert kept == words[:start] + words[start + 3:]


def test_the_rate_sets_how_many_tokens_an_edit_touches():
    assert len(augment_text(TEXT, "delete", 0.3, random.Random(0)).split()) == 11 - 3
    assert len(augment_text(TEXT, "insert", 0.5, random.Random(0)).split()) == 11 + 6  # round(5.5) = 6
    assert len(augment_text(TEXT, "delete", 0.01, random.Random(0)).split()) == 10  # at least one edit


def test_chinese_and_short_texts_are_edited_by_character_and_joined_without_spaces():
    deleted = augment_text(CHINESE, "delete", 0.1, random.Random(0))
    assert len(deleted) == 10 and " " not in deleted and not Counter(deleted) - Counter(CHINESE)
    assert augment_text("rates up again", "insert", 0.1, random.Random(0)).count(" ") == 0  # 3 words: characters
    assert augment_text("ok", "swap", 0.1, random.Random(0)) is None  # fewer than 4 tokens: left alone
    assert augment_text("好的", "delete", 0.1, random.Random(0)) is None


def test_copies_follow_the_rows_with_their_labels_lines_and_columns():
    ds = TextDataset([TEXT, CHINESE, "ok"], ["up", "up", "down"], [2, 3, 4], columns={"region": ["eu", "cn", "us"]})
    out, summary = augment_dataset(ds, 4, seed=7)
    assert out.texts[:3] == ds.texts and out.labels[:3] == ds.labels and out.lines[:3] == [2, 3, 4]
    copies = list(zip(out.texts[3:], out.labels[3:], out.lines[3:], out.columns["region"][3:]))
    assert [c[1:] for c in copies] == [("up", 2, "eu")] * 4 + [("up", 3, "cn")] * 4  # "ok" gets none
    assert len({c[0] for c in copies}) == 8 and not {c[0] for c in copies} & set(ds.texts)
    assert summary == {"copies": 4, "rate": 0.1, "rows_added": 8, "operations": dict.fromkeys(OPERATIONS, 2)}
    assert augment_dataset(ds, 4, seed=7)[0].texts == out.texts  # seeded
    assert augment_dataset(ds, 0)[0] is ds
