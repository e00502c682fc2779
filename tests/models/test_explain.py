"""Word-level occlusion: units and their offsets, weights that are what removing a unit does (checked by hand
on every runtime), one batched call per explanation, long texts capped, Chinese text."""

import numpy as np
import pytest

from samples import SAMPLE_TEST, sample_rows
from tailor.models.classifier import TextClassifier
from tailor.models.explain import MAX_UNITS, OcclusionPlan, explain_texts, split_units, strongest_first, without
from tailor.models.runtimes import default_bases

TEXT = "Apple shares jumped 5.5% after record revenue, don't sell!"


def test_units_are_words_with_exact_offsets():
    units = split_units(TEXT)
    assert [u.token for u in units] == ["Apple", "shares", "jumped", "5.5", "after", "record", "revenue", "don't",
                                        "sell"]
    assert all(TEXT[u.start:u.end] == u.token for u in units)
    assert (units[3].start, units[3].end) == (20, 23)


def test_chinese_text_is_split_into_characters_beside_latin_words():
    text = "央行降息0.25个百分点，Tesla 上海建厂！"
    units = split_units(text)
    assert [u.token for u in units] == ["央", "行", "降", "息", "0.25", "个", "百", "分", "点", "Tesla", "上", "海",
                                        "建", "厂"]
    assert all(text[u.start:u.end] == u.token for u in units)


def test_a_long_text_is_explained_in_spans_that_cover_it():
    text = " ".join(f"w{i}" for i in range(150))
    units = split_units(text)
    assert len(units) == MAX_UNITS == 64
    assert units[0].token == "w0 w1 w2" and units[-1].token == "w148 w149"  # 150 = 22 spans of 3 + 42 of 2
    assert [len(u.token.split()) for u in units] == [3] * 22 + [2] * 42
    assert all(text[u.start:u.end] == u.token for u in units)
    assert units[0].start == 0 and units[-1].end == len(text)
    with pytest.raises(ValueError, match="max_units must be at least 1, not 0"):
        split_units(text, 0)


def test_without_cuts_only_the_units():
    units = split_units(TEXT)
    assert without(TEXT, [units[0], units[7]]) == " shares jumped 5.5% after record revenue,  sell!"


def test_a_plan_puts_each_original_before_its_variants():
    plan = OcclusionPlan(["up big", "down"])
    assert plan.texts == ["up big", " big", "up ", "down", ""]
    assert plan.originals == [0, 3]


@pytest.fixture(scope="module")
def head_dir(head_artifact):
    return head_artifact[0]


@pytest.mark.parametrize("runtime", ["torch-fp32", "onnx-fp32", "onnx-int8"])
def test_weights_are_the_probability_lost_without_the_unit(head_dir, runtime):
    home = next(p for p in head_dir.parents if (p / "tailor.db").is_file())  # the fixture's storage root
    classifier = TextClassifier.from_dir(head_dir, runtime=runtime, bases=default_bases(home))
    text = sample_rows(SAMPLE_TEST)[0][0]
    calls = []

    def counted(texts):
        calls.append(len(texts))
        return classifier.predict_proba(texts)

    [explained] = explain_texts(counted, classifier.labels, [text])
    units = split_units(text)
    assert calls == [len(units) + 1]  # the original and every variant in one call
    assert [(t["token"], t["start"], t["end"]) for t in explained.tokens] == [(u.token, u.start, u.end) for u in units]
    assert all(text[t["start"]:t["end"]] == t["token"] for t in explained.tokens)
    # by hand: the unit with the largest weight, removed from the text and scored alone
    top = max(range(len(units)), key=lambda i: explained.tokens[i]["weight"])
    column = classifier.labels.index(explained.label)
    alone, cut = classifier.predict_proba([text, without(text, [units[top]])])
    assert explained.label == classifier.labels[int(alone.argmax())]
    assert explained.tokens[top]["weight"] == pytest.approx(alone[column] - cut[column], abs=2e-5)
    assert explained.tokens[top]["weight"] > 0


def test_every_label_and_several_texts_in_one_call(head_dir):
    classifier = TextClassifier.from_dir(head_dir)
    texts = [t for t, _ in sample_rows(SAMPLE_TEST)[:3]]
    calls = []

    def counted(batch):
        calls.append(len(batch))
        return classifier.predict_proba(batch)

    explained = explain_texts(counted, classifier.labels, texts, all_labels=True)
    assert calls == [sum(len(split_units(t)) + 1 for t in texts)]
    for text, e in zip(texts, explained):
        assert set(e.by_label) == set(classifier.labels) and e.tokens == e.by_label[e.label]
        # a unit's weights over all labels sum to zero: the probabilities it moves go somewhere
        sums = np.sum([[t["weight"] for t in e.by_label[label]] for label in classifier.labels], axis=0)
        assert np.abs(sums).max() < 1e-5
        assert e.probs == pytest.approx(classifier.predict_proba([text])[0], abs=1e-5)


def test_strongest_first_orders_by_size():
    tokens = [{"token": "a", "weight": 0.1}, {"token": "b", "weight": -0.3}, {"token": "c", "weight": 0.2}]
    assert [t["token"] for t in strongest_first(tokens)] == ["b", "c", "a"]
