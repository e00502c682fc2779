"""Retraining a registered classifier: its weights continued, feedback rows learned, old rows replayed, labels
checked or grown, tenants kept apart."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from api_helpers import publish_copy
from samples import SAMPLE_TEST, sample_rows, write_csv
from tailor.errors import DataError, NotFoundError, UsageError
from tailor.registry.service import load_classifier, open_registry
from tailor.settings import Settings, get_settings
from tailor.train.progress import RecordingReporter
from tailor.train.retrain import assemble_rows, run_retrain

LABELS = ["bearish", "bullish", "neutral"]
FROZEN = dict(epochs=1, lr=1e-9, lora_lr=1e-9, head_lr=1e-9, head_epochs=1, batch_size=16, seed=0)


def _parent(trained, session_home, method: str, *, tenant: str = "acme", name: str = "sentiment", lineage=None):
    """A copy of the session's trained ``method`` version as ``tenant``'s ``name:1`` in this test's home."""
    version = trained[method].version
    source = open_registry(Settings(home=session_home)).artifact_dir(version)
    if lineage is not None:
        version = replace(version, lineage={**version.lineage, **lineage})
    return publish_copy(get_settings(), (source, version), tenant, name)


def _record_feedback(tenant: str, name: str, labelled: list[tuple[str, str]], *, stored: bool = True) -> None:
    """Answers of ``name:1`` for the texts (stored or not) and feedback giving each its label."""
    from tailor.monitor.feedback import FeedbackStore, give_feedback
    from tailor.monitor.records import PredictionRecord, PredictionStore, new_id

    url = get_settings().registry_url
    answers = [PredictionRecord(id=new_id("classification"), tenant=tenant, kind="classification", model=name,
                                model_name=name, version=1, label=LABELS[0], score=0.5,
                                scores={k: 1 / 3 for k in LABELS}, input={"text": text} if stored else None)
               for text, _ in labelled]
    PredictionStore(url).add(answers)
    give_feedback(PredictionStore(url), FeedbackStore(url), tenant,
                  [{"prediction_id": a.id, "label": label} for a, (_, label) in zip(answers, labelled)])


@pytest.mark.parametrize("method", ["full", "lora", "head"])
def test_a_retrain_starts_from_the_parents_weights(trained, session_home, fresh_home, small_test_csv, method):
    parent = _parent(trained, session_home, method)
    result = run_retrain("sentiment", tenant="acme", file=small_test_csv, feedback=False, replay=0, **FROZEN)
    version = result.version
    assert (version.ref, version.method, version.base_model) == ("sentiment:2", method, "minilm-l6")
    assert version.lineage["parent"] == "sentiment:1"
    assert version.lineage["retrain"] == {"rows": {"file": 40, "feedback": 0, "replay": 0}, "feedback": False,
                                          "replay_share": 0, "replay_sources": []}
    assert version.lineage["dataset"]["path"] == str(small_test_csv)
    texts = [text for text, _ in sample_rows(SAMPLE_TEST)[40:60]]
    before = load_classifier(parent.ref, "acme", runtime=None).predict_proba(texts)
    after = load_classifier(version.ref, "acme", runtime=None)
    assert after.labels == LABELS
    assert np.abs(after.predict_proba(texts) - before).max() < 1e-3


def test_feedback_labels_are_learned_and_old_rows_replayed(trained, session_home, fresh_home, small_train_csv):
    parent = _parent(trained, session_home, "head")
    rows = sample_rows(SAMPLE_TEST)
    predicted = load_classifier(parent.ref, "acme", runtime=None).predict([t for t, _ in rows])
    wrong = [(text, label) for (text, label), p in zip(rows, predicted) if p.label != label][:30]
    assert len(wrong) == 30
    _record_feedback("acme", "sentiment", wrong)
    _record_feedback("acme", "sentiment", rows[:5], stored=False)  # no stored text: not a training row
    _record_feedback("globex", "sentiment", rows[5:10])  # another tenant's
    _record_feedback("acme", "other-model", rows[10:15])  # another model's
    result = run_retrain("sentiment", tenant="acme", epochs=1, head_epochs=200, seed=0)
    retrain = result.version.lineage["retrain"]
    assert retrain["rows"] == {"file": 0, "feedback": 30, "replay": 60}  # 4 x 30, capped at all 60
    assert retrain["replay_sources"] == [parent.lineage["dataset"]]
    assert result.version.lineage["dataset"] is None
    again = load_classifier(result.version.ref, "acme", runtime=None).predict([t for t, _ in wrong])
    learned = sum(p.label == label for p, (_, label) in zip(again, wrong))
    assert learned == 28  # the parent: 0 of 30


def test_replay_draws_a_share_of_the_parents_training_rows(trained, session_home, fresh_home, small_train_csv,
                                                           tmp_path):
    parent = _parent(trained, session_home, "head")
    new = write_csv(tmp_path / "new.csv", sample_rows(SAMPLE_TEST)[:12])
    old_texts = {text for text, _ in sample_rows(small_train_csv)}
    common = dict(file=new, feedback=False, tenant="acme", settings=get_settings(), reporter=RecordingReporter())
    for share, replayed in ((1.0, 12), (0.5, 6), (10.0, 60), (0, 0)):
        rows = assemble_rows(parent, replay=share, **common)
        assert rows.counts == {"file": 12, "feedback": 0, "replay": replayed}
        assert len(rows.dataset) == 12 + replayed and set(rows.dataset.texts[12:]) <= old_texts
    assert rows.replay_sources == []
    assert assemble_rows(parent, replay=1.0, **common).dataset == assemble_rows(parent, replay=1.0, **common).dataset


def test_replay_refuses_a_training_file_that_is_gone_or_changed(trained, session_home, fresh_home, small_train_csv,
                                                                tmp_path):
    copy = tmp_path / "loans.csv"
    shutil.copy(small_train_csv, copy)
    dataset = {**trained["head"].version.lineage["dataset"], "path": str(copy)}
    parent = _parent(trained, session_home, "head", lineage={"dataset": dataset})
    common = dict(file=small_train_csv, feedback=False, tenant="acme", settings=get_settings(),
                  reporter=RecordingReporter())
    with copy.open("a", encoding="utf-8") as f:
        f.write("one more row,bullish\n")
    with pytest.raises(DataError) as changed:
        assemble_rows(parent, **common)
    new_sha = __import__("hashlib").sha256(copy.read_bytes()).hexdigest()
    assert str(changed.value) == (f"the training file of sentiment:1 (loans.csv) changed since it was trained (SHA-256 "
                                  f"{new_sha[:12]}, not {dataset['sha256'][:12]}), so its rows cannot be replayed: "
                                  "restore it, or retrain with replay 0 (--replay 0)")
    copy.unlink()
    with pytest.raises(DataError) as gone:
        assemble_rows(parent, **common)
    assert str(gone.value) == ("the training file of sentiment:1 (loans.csv) is gone, so its rows cannot be "
                               "replayed: restore it, or retrain with replay 0 (--replay 0)")
    assert assemble_rows(parent, replay=0, **common).counts == {"file": 60, "feedback": 0, "replay": 0}


def test_a_label_the_parent_lacks_is_refused_by_name(trained, session_home, fresh_home, tmp_path):
    _parent(trained, session_home, "head")
    new = write_csv(tmp_path / "new.csv", [*sample_rows(SAMPLE_TEST)[:9], ("refund my card", "refund"),
                                           ("where is my refund", "refund")])
    with pytest.raises(UsageError) as refused:
        run_retrain("sentiment", tenant="acme", file=new, replay=0)
    assert str(refused.value) == ("label 'refund' is not a label of sentiment:1 (its labels: bearish, bullish, "
                                  "neutral); pass new_labels (--new-labels) to add it as a new class")


def test_new_labels_grow_the_head_and_keep_the_old_answers(trained, session_home, fresh_home, tmp_path):
    from tailor.models.classifier import load_trainable
    from tailor.train.evaluate import predict_logits

    _parent(trained, session_home, "head")
    texts = [text for text, _ in sample_rows(SAMPLE_TEST)[:30]]
    for method in ("full", "lora", "head"):
        source = open_registry(Settings(home=session_home)).artifact_dir(trained[method].version)
        old = load_classifier(trained[method].version.ref, settings=Settings(home=session_home), runtime=None)
        _, grown = load_trainable(source, [*LABELS, "refund"])
        logits = predict_logits(grown, old.encode(texts), old.tokenizer.pad_token_id)
        assert logits.shape == (30, 4)
        assert (logits.argmax(1) == old.predict_proba(texts).argmax(1)).all()
    rows = [*sample_rows(SAMPLE_TEST)[:12], *[(f"please refund order {i}", "refund") for i in range(6)]]
    result = run_retrain("sentiment", tenant="acme", file=write_csv(tmp_path / "new.csv", rows), replay=0,
                         new_labels=True, **FROZEN)
    assert load_classifier(result.version.ref, "acme", runtime=None).labels == [*LABELS, "refund"]
    assert result.version.lineage["label_counts"] == {"bearish": 2, "bullish": 0, "neutral": 8, "refund": 4}


def test_retrain_errors_other_tenants_and_nothing_to_train_on(trained, session_home, fresh_home, capsys):
    from tailor.cli import main

    _parent(trained, session_home, "head")
    with pytest.raises(NotFoundError):
        run_retrain("sentiment", tenant="globex")
    with pytest.raises(UsageError) as nothing:
        run_retrain("sentiment", tenant="acme")
    message = ("nothing to retrain sentiment:1 on: no feedback labels on its stored answers (predict with "
               "\"store\": true, then POST /v1/feedback) and no training file given")
    assert str(nothing.value) == message
    assert main(["retrain", "sentiment", "--tenant", "acme"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"error: {message}" and "Traceback" not in err
    with pytest.raises(UsageError) as method:
        run_retrain("sentiment", tenant="acme", method="full")
    assert str(method.value) == ("method 'full' differs from sentiment:1's method 'head': a retrain continues its "
                                 "weights; leave method unset or train a new model from a base")
