"""The label-name prior on a new linear head: the prompts it is built from, the zero-shot start, the pull
toward it, and what it is worth on 8 real tweets per label."""

from pathlib import Path

import numpy as np
import pytest

from tailor.catalog import resolve_base
from tailor.models.classifier import ClassifierSpec, TextClassifier, build_model
from tailor.models.zero_shot import build_zero_shot_model
from tailor.train.batching import encode
from tailor.train.classify import fit_head, label_prior_rows, zero_shot_skill
from tailor.train.config import load_preset
from tailor.train.evaluate import macro_f1
from tailor.train.progress import RecordingReporter

from samples import SAMPLE_DIR, SAMPLE_TRAIN, sample_rows

LABELS = ["bearish", "bullish", "neutral"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_base("minilm-l6").path)


# ------------------------------------------------------------------------------------------- the prompts


def test_the_prior_rows_are_the_label_prompts_in_class_order(tokenizer):
    rows, why_not = label_prior_rows(tokenizer, ["card_arrival", "refund-request"], load_preset("default"))
    assert rows.targets == [0, 1] and why_not is None
    assert tokenizer.batch_decode(rows.input_ids, skip_special_tokens=True) == ["card arrival", "refund request"]


@pytest.mark.parametrize("labels, cfg, message", [
    (["0", "1", "2"], {}, "no label-name prior: label '0' is not named in words, so the head starts from random "
                          "weights"),
    (["low", "4.5"], {}, "no label-name prior: label '4.5' is not named in words, so the head starts from random "
                         "weights"),
    (["a_b", "a-b"], {}, "no label-name prior (labels 'a_b' and 'a-b' read the same ('a b'): rename one, or "
                         "describe them): the head starts from random weights"),
    (["bearish", "bullish"], {"label_prior": 0}, "label-name prior off (label_prior 0): the head starts from random "
                                                 "weights"),
])
def test_no_prior_where_the_labels_say_nothing_or_it_is_off(tokenizer, labels, cfg, message):
    assert label_prior_rows(tokenizer, labels, load_preset("default", **cfg)) == (None, message)


def test_chinese_label_names_are_words(tokenizer):
    rows, _ = label_prior_rows(tokenizer, ["体育", "财经"], load_preset("default"))
    assert rows is not None and rows.targets == [0, 1]


@pytest.mark.parametrize("predictions, skill", [
    ([0, 0, 1, 1, 2, 2], 1.0), ([0, 1, 1, 2, 2, 0], 0.25), ([0, 0, 0, 0, 0, 0], 0.0), ([1, 1, 2, 2, 0, 0], -0.5)])
def test_skill_is_balanced_accuracy_from_chance_to_all_right(predictions, skill):
    # balanced accuracy 1, 0.5, 1/3 and 0 over 3 labels
    assert zero_shot_skill([0, 0, 1, 1, 2, 2], predictions, 3) == pytest.approx(skill)


# ------------------------------------------------------------------------------------------- the fit


def _rows(path, per_label):
    """``per_label`` rows of each label of a shipped sample file (file order), their labels sorted."""
    rows = sample_rows(path, per_label=per_label)
    return rows, sorted({y for _, y in rows})


@pytest.fixture(scope="module")
def intents(tokenizer):
    """Bank intents (22 labels named in words): 3 training rows per label, a validation row per label, and the
    shipped test file."""
    rows, labels = _rows(SAMPLE_DIR / "bank_intents_train.csv", 4)
    ids = {label: i for i, label in enumerate(labels)}
    train = [(t, y) for k, (t, y) in enumerate(rows) if k % 4]
    val = [(t, y) for k, (t, y) in enumerate(rows) if not k % 4]
    test, _ = _rows(SAMPLE_DIR / "bank_intents_test.csv", None)
    return (labels, *(encode(tokenizer, [t for t, _ in part], 64, [ids[y] for _, y in part]) for part in (train, val)),
            [t for t, _ in test], np.array([ids[y] for _, y in test]))


def _fit(tokenizer, data, **cfg):
    """A head fitted on ``data``'s training rows, with the label prior unless ``label_prior=0``; the model and
    what fit_head recorded and said."""
    labels, train, val, _, _ = data
    config = load_preset("default", method="head", seed=0, **cfg)
    model = build_model("head", resolve_base("minilm-l6"), labels, seed=0)
    prior, _ = label_prior_rows(tokenizer, labels, config)
    reporter = RecordingReporter()
    outcome = fit_head(model, train, val, config, pad_id=tokenizer.pad_token_id, num_labels=len(labels),
                       device="cpu", reporter=reporter, prior=prior)
    return model, outcome, [text for text, _ in reporter.messages]


def _test_f1(model, tokenizer, data) -> float:
    labels, _, _, texts, targets = data
    classifier = TextClassifier(model, tokenizer, ClassifierSpec("head", "minilm-l6", labels, 128), "cpu")
    return macro_f1(targets, classifier.predict_proba(texts).argmax(1))


def _zero_shot_weights(labels):
    return build_zero_shot_model(resolve_base("minilm-l6"), labels).classifier.model.classifier.weight


def test_the_head_starts_as_the_zero_shot_classifier(tokenizer, intents):
    import torch

    # one step at a negligible learning rate: the head is its start
    model, outcome, said = _fit(tokenizer, intents, head_epochs=1, head_lr=1e-9)
    assert torch.allclose(model.classifier.weight, _zero_shot_weights(intents[0]), atol=1e-4)
    assert float(model.classifier.bias.detach().abs().max()) < 1e-6
    # measured: the 22 names alone answer 57 of the 66 training rows (balanced accuracy 0.864)
    assert outcome.label_prior == {"strength": 2.0, "skill": pytest.approx(0.857, abs=0.03), "used": True}
    assert any(m.startswith("the head starts as the zero-shot classifier of the label names (skill 0.8")
               for m in said), said


def test_the_pull_keeps_the_head_near_its_start(tokenizer, intents):
    import torch

    start = _zero_shot_weights(intents[0])
    distance = {c: float(torch.linalg.norm(_fit(tokenizer, intents, label_prior=c)[0].classifier.weight - start))
                for c in (0.5, 50)}
    # measured: 6.4 at c=0.5, 1.1 at c=50 (the start's own norm: 15 per row)
    assert distance[50] < distance[0.5] / 3, distance


MEDICAL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "medical_abstracts"


@pytest.fixture(scope="module")
def abstracts(tokenizer):
    """Medical abstracts (5 labels named in words, ../shared/datasets): 8 rows per label, the first of each
    kept for validation, and the 580 test rows."""
    if not MEDICAL.is_dir():
        pytest.skip("needs ../shared/datasets/medical_abstracts")
    rows, labels = _rows(MEDICAL / "train.csv", 8)
    ids = {label: i for i, label in enumerate(labels)}
    seen: set[str] = set()
    val = [(t, y) for t, y in rows if y not in seen and not seen.add(y)]
    train = [row for row in rows if row not in val]
    test, _ = _rows(MEDICAL / "test.csv", None)
    return (labels, *(encode(tokenizer, [t for t, _ in part], 128, [ids[y] for _, y in part]) for part in (train, val)),
            [t for t, _ in test], np.array([ids[y] for _, y in test]))


def test_the_prior_beats_a_head_from_random_weights_on_8_abstracts_per_label(tokenizer, abstracts):
    scores = {c: _test_f1(_fit(tokenizer, abstracts, label_prior=c)[0], tokenizer, abstracts) for c in (0, 2)}
    # measured: from random weights 0.524, with the prior 0.547 (the label names alone: 0.547)
    assert scores[0] == pytest.approx(0.524, abs=0.02), scores
    assert scores[2] - scores[0] > 0.015, scores


def test_where_the_rows_already_answer_well_the_prior_costs_a_little(tokenizer, intents):
    scores = {c: _test_f1(_fit(tokenizer, intents, label_prior=c)[0], tokenizer, intents) for c in (0, 2)}
    # measured: 0.943 from random weights, 0.902 with the prior (3 rows per label, 22 labels): the cost README
    # states
    assert scores == {0: pytest.approx(0.943, abs=0.02), 2: pytest.approx(0.902, abs=0.02)}


def test_label_names_that_answer_like_chance_are_not_used(tokenizer):
    rows, labels = _rows(SAMPLE_TRAIN, 8)
    ids = {label: i for i, label in enumerate(labels)}
    train = encode(tokenizer, [t for t, _ in rows], 64, [ids[y] for _, y in rows])
    model, outcome, said = _fit(tokenizer, (labels, train, train, [], []), head_epochs=10)
    # measured: "bearish", "bullish" and "neutral" answer 8 tweets per label with balanced accuracy 0.4
    assert outcome.label_prior == {"strength": 2.0, "skill": pytest.approx(0.1, abs=0.05), "used": False}
    assert any(m.startswith("label-name prior not used: the label names alone answer the training rows with skill "
                            "0.") and m.endswith("(0 is chance, 1 all right; it takes 0.2), so the head starts "
                                                 "from random weights") for m in said), said
