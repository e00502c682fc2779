"""The explicit loop on real MiniLM and real tweets: the loss falls, runs repeat, checkpoints resume."""

import pytest

from tailor.catalog import resolve_base
from tailor.models.classifier import build_model
from tailor.train.batching import encode
from tailor.train.checkpoint import Checkpointer
from tailor.train.classify import class_weights, fit_encoder
from tailor.train.config import load_preset
from tailor.train.progress import RecordingReporter

from samples import sample_rows

LABELS = ["bearish", "bullish", "neutral"]


@pytest.fixture(scope="module")
def data():
    from transformers import AutoTokenizer

    base = resolve_base("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    rows = sample_rows(per_label=16)
    ids = {label: i for i, label in enumerate(LABELS)}
    train = encode(tokenizer, [t for t, _ in rows[:36]], 64, [ids[y] for _, y in rows[:36]])
    val = encode(tokenizer, [t for t, _ in rows[36:]], 64, [ids[y] for _, y in rows[36:]])
    return base, tokenizer, train, val


def _fit(data, cfg, **kw):
    base, tokenizer, train, val = data
    model = build_model("full", base, LABELS, seed=cfg.seed)
    reporter = RecordingReporter()
    outcome = fit_encoder(model, train, val, cfg, lr=cfg.lr, pad_id=tokenizer.pad_token_id, num_labels=3,
                          device="cpu", bf16=False, reporter=reporter, **kw)
    return outcome, reporter


def test_seeded_run_loss_falls_and_repeats(data):
    cfg = load_preset("default", epochs=3, batch_size=8, patience=0, seed=0, lr=3e-4, warmup_ratio=0.0)
    first, reporter = _fit(data, cfg)
    losses = [row["train_loss"] for row in first.history]
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < losses[0] * 0.8
    assert [step for step, _ in reporter.metric_events] == [5, 10, 15]
    second, _ = _fit(data, cfg)
    assert [row["train_loss"] for row in second.history] == losses
    assert first.best_epoch == max(first.history, key=lambda r: r["valid_macro_f1"])["epoch"]


def test_resume_continues_after_the_last_checkpoint(data, tmp_path):
    cfg = load_preset("default", epochs=2, batch_size=8, patience=0, seed=0)
    ckpt = Checkpointer(tmp_path / "run")

    base, tokenizer, train, val = data
    first = build_model("full", base, LABELS)
    one_epoch = cfg.with_overrides(epochs=1)
    fit_encoder(first, train, val, one_epoch, lr=cfg.lr, pad_id=tokenizer.pad_token_id, num_labels=3, device="cpu",
                bf16=False, reporter=RecordingReporter(), checkpointer=ckpt)
    assert sorted(p.name for p in ckpt.dir.iterdir()) == ["best.pt", "last.pt"]
    resumed, reporter = _fit(data, cfg, checkpointer=ckpt, resume=True)
    assert resumed.resumed_from == 1
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert reporter.messages[0][0] == "resumed from the checkpoint after epoch 1"


def test_a_passed_deadline_stops_after_one_step(data):
    import time

    cfg = load_preset("default", epochs=3, batch_size=8, seed=0)
    outcome, _ = _fit(data, cfg, deadline=time.monotonic())
    assert (outcome.stop_reason, outcome.steps, len(outcome.history)) == ("time_budget", 1, 1)


def test_class_weights_only_for_imbalance():
    assert class_weights([0, 1, 0, 1], 2, "auto") is None
    weights = class_weights([0, 0, 0, 0, 1, 1], 2, "auto")
    assert [round(w, 4) for w in weights.tolist()] == [0.75, 1.5]
    assert class_weights([0, 0, 0, 0, 1, 1], 2, "none") is None
    assert [round(w, 4) for w in class_weights([0, 1], 3, "balanced").tolist()] == [1.0, 1.0, 0.0]
