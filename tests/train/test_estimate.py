import json
import math
import time

import pytest

from tailor.catalog import resolve_base
from tailor.train.estimate import (SPEED_FILE, STALE_AFTER_S, Estimate, Speed, estimate_chat, estimate_classification,
                                   format_seconds, machine_fingerprint, measured_speed, padded_tokens, probe_length,
                                   probe_speed, took_message)

# A fixed measured speed: 16 rows x 10 tokens per probe batch, so one token of forward + backward costs
# 0.16 / 160 = 1 ms and one of forward 0.1 ms (bf16) or 0.2 ms (fp32); a full step's optimizer 50 ms.
SPEED = Speed(batch_size=16, length=10, step_s={"full": {"fwd_bwd": 0.16, "optimizer": 0.05},
                                                "lora": {"fwd_bwd": 0.12, "optimizer": 0.002}},
              forward_s={"train": 0.016, "fp32": 0.032}, params=20_000_000, hidden=100, head_macs_per_s=1e9)


def test_padded_tokens_follow_the_length_grouped_batches():
    assert padded_tokens([3, 5, 4, 10], 2, shuffle=False) == 2 * 4 + 2 * 10
    assert padded_tokens([7] * 5, 2, shuffle=True, seed=3) == 35
    assert probe_length([7] * 5, 2, seed=3) == 8
    assert probe_length([30, 31, 33], 16, seed=0) == 40


def test_full_estimate_sums_every_stage_from_the_measured_speed():
    est = estimate_classification("full", SPEED, train_lengths=[10] * 32, val_lengths=[10] * 64, n_test=128,
                                  num_labels=3, batch_size=16, epochs=3, seed=0, head_epochs=300, elapsed_s=4.0)
    # train: 3 epochs x 320 tokens x 1 ms + 3 x 2 steps x 50 ms; validation: 3 x 640 tokens x 0.1 ms;
    # test: 128 + 64 rows x 10 tokens x 0.2 ms; gate: build (5.2 + 0.167 x 20) x machine (0.05 / 20 / 0.0095 =
    # 0.263) + sessions 0.03 x 20 x 0.263 + scoring (3.5 x 64 + 198) x 10 tokens x 0.2 ms; save 0.5 + 0.015 x 20;
    # explain: 32 sampled + 5 mistakes x (10 words + 1) + 32 x (1 + 3 draws) = 535 rows x 10 tokens x 0.2 ms
    assert est.stages == {"data": 4.0, "train": 1.3, "validation": 0.2, "test": 0.4, "explain": 1.1, "gate": 3.2,
                          "save": 0.8}
    assert est.total_s == 11.0
    assert (est.training_s, est.per_epoch_s, est.epochs, est.trials) == (1.5, 0.5, 3, 1)
    assert est.describe() == ("11s (data 4s (done), train 1s over 3 epochs, validation 0s, test 0s, explain 1s, "
                              "gate 3s, save 1s)")
    assert est.as_dict() == {"method": "full", "total_s": 11.0, "stages": est.stages, "epochs": 3, "trials": 1}


def test_lora_head_and_search_estimates():
    common = dict(train_lengths=[10] * 320, val_lengths=[10] * 64, n_test=0, num_labels=4, batch_size=16,
                  epochs=2, seed=0, head_epochs=300)
    lora = estimate_classification("lora", SPEED, **common)
    assert lora.stages["train"] == round(2 * 3200 * 0.12 / 160 + 2 * 20 * 0.002, 1) == 4.9
    machine = 0.05 / 20 / 0.0095  # this machine's optimizer step against the development machine's
    scoring = (3.5 * 64 + 198) * 10 * 0.0002
    assert lora.stages["gate"] == round(0.03 * 20 * machine + scoring, 1) == 1.0  # the base's graphs are cached
    unbuilt = estimate_classification("lora", SPEED, gate_graphs_built=False, **common)
    assert unbuilt.stages["gate"] == round((0.03 * 20 + 5.2 + 0.167 * 20) * machine + scoring, 1) == 3.2
    head = estimate_classification("head", SPEED, **common)
    # one fp32 pass over 384 rows (3840 tokens x 0.2 ms) + 300 steps x 320 rows x 100 x 4 classes x 3 MACs
    assert head.stages["train"] == round(0.768 + 300 * 320 * 100 * 4 * 3 / 1e9, 1) == 0.9
    assert "validation" not in head.stages and head.epochs == 300
    assert head.describe() == ("2s (data 0s (done), train 1s (embedding 1s, 300 head steps), test 0s, explain 0s, "
                               "gate 1s, save 0s)")
    search = estimate_classification("full", SPEED, trials=3, **common)
    full = estimate_classification("full", SPEED, **common)
    assert search.stages["train"] == pytest.approx(3 * full.stages["train"], abs=0.1)
    assert "over 2 epochs x 3 trials" in search.describe()


def test_contrastive_estimate_adds_its_contrastive_steps_to_the_head_and_builds_its_own_graph():
    common = dict(train_lengths=[10] * 320, val_lengths=[10] * 64, n_test=0, num_labels=4, batch_size=16,
                  epochs=2, seed=0, head_epochs=300)
    est = estimate_classification("contrastive", SPEED, contrastive_work=(40, 12_000), **common)
    # 12,000 padded tokens x 1 ms forward + backward + 40 optimizer steps x 50 ms, then the head's 0.9 s
    assert est.notes["contrastive_s"] == 14.0
    assert est.stages["train"] == round(14.0 + 0.768 + 300 * 320 * 100 * 4 * 3 / 1e9, 1) == 14.9
    machine = 0.05 / 20 / 0.0095
    scoring = (3.5 * 64 + 198) * 10 * 0.0002
    assert est.stages["gate"] == round((5.2 + 0.167 * 20 + 0.03 * 20) * machine + scoring, 1) == 3.2  # own graph
    assert est.stages["save"] == 0.8 and "validation" not in est.stages and est.epochs == 40
    assert est.describe() == ("19s (data 0s (done), train 15s (contrastive 14s over 40 steps, embedding 1s, "
                              "300 head steps), test 0s, explain 0s, gate 3s, save 1s)")
    searched = estimate_classification("contrastive", SPEED, contrastive_work=(40, 12_000), trials=2, **common)
    assert searched.stages["train"] == round(2 * 14.8832, 1) and searched.trials == 2


def test_contrastive_workload_counts_its_own_batches_padded_tokens():
    from tailor.train.batching import Encoded
    from tailor.train.config import load_preset
    from tailor.train.contrastive import balanced_batches
    from tailor.train.estimate import contrastive_workload

    lengths = [3 + i % 7 for i in range(40)]
    targets = [i % 5 for i in range(40)]
    train = Encoded([[1] * n for n in lengths], targets)
    cfg = load_preset("default", contrastive_steps=6, contrastive_batch_size=20, seed=3)
    batches = balanced_batches(targets, 20, 6, 3)
    assert contrastive_workload(train, cfg) == (6, sum(20 * max(lengths[i] for i in b) for b in batches))
    assert contrastive_workload(train, cfg)[1] <= 6 * 20 * 9


def test_a_budget_cuts_the_training_stages():
    est = Estimate("full", {"data": 2.0, "train": 80.0, "validation": 20.0, "test": 3.0}, epochs=4)
    cut = est.within(50)
    assert cut.stages == {"data": 2.0, "train": 40.0, "validation": 10.0, "test": 3.0}
    assert est.within(None) is est and est.within(500) is est


def test_messages_format_durations_and_the_deviation():
    assert [format_seconds(s) for s in (0.4, 43, 59.6, 130, 3725)] == ["0s", "43s", "1m00s", "2m10s", "1h02m"]
    assert took_message(123, 130) == "took 2m03s (estimated 2m10s, -5%)"
    assert took_message(196, 43) == "took 3m16s (estimated 43s, +356%)"


def test_chat_estimate_counts_epochs_validations_and_generation():
    speed = {"train_tokens_per_s": 100.0, "forward_tokens_per_s": 400.0, "decode_s_per_token": 0.05}
    est = estimate_chat(speed, train_lengths=[20] * 16, val_lengths=[10] * 4, test_lengths=[10] * 4, batch_size=4,
                        grad_accum=2, epochs=2, eval_every=0, seed=1, samples=3, sample_max_tokens=10,
                        elapsed_s=5.0)
    # train 2 x 320 tokens / 100; validation 2 x 40 / 400; test 2 x 40 / 400 + 2 x 3 x 10 x 0.05
    assert est.stages == {"data": 5.0, "train": 6.4, "validation": 0.2, "test": 3.2, "save": 0.5}
    assert est.method == "chat-lora" and est.total_s == 15.3


def _counting_probe(calls):
    def probe(base, methods, *, batch_size, length, device, bf16, threads):
        calls.append((tuple(methods), threads))
        step_s = {m: {"fwd_bwd": 0.1, "optimizer": 0.01} for m in methods}
        return Speed(batch_size, length, step_s, {"train": 0.01, "fp32": 0.02}, 1000, 8, 1e9, threads, device, bf16)
    return probe


def test_the_speed_is_cached_per_threads_and_methods_and_measured_again_when_stale(tmp_path):
    base = resolve_base("minilm-l6")
    calls = []
    kwargs = dict(batch_size=16, length=32, device="cpu", bf16=False, home=tmp_path, probe=_counting_probe(calls))
    first = measured_speed(base, ["full", "head"], threads=2, now=1000.0, **kwargs)
    again = measured_speed(base, ["head", "full"], threads=2, now=2000.0, **kwargs)
    assert calls == [(("full",), 2)] and again == first
    measured_speed(base, ["head"], threads=2, now=2000.0, **kwargs)  # the forward passes are in every probe
    measured_speed(base, ["contrastive"], threads=2, now=2000.0, **kwargs)  # it steps like full fine-tuning
    measured_speed(base, ["full"], threads=1, now=2000.0, **kwargs)  # fewer usable cores: a new probe
    both = measured_speed(base, ["lora", "full"], threads=2, now=2000.0, **kwargs)  # only lora is new
    assert set(both.step_s) == {"full", "lora"}
    measured_speed(base, ["lora"], threads=2, now=1000.0 + STALE_AFTER_S - 1, **kwargs)
    measured_speed(base, ["full"], threads=2, now=1000.0 + STALE_AFTER_S + 1, **kwargs)  # stale
    assert calls == [(("full",), 2), (("full",), 1), (("lora",), 2), (("full",), 2)]
    stored = json.loads((tmp_path / SPEED_FILE).read_text())
    assert stored["format"] == 3
    assert sorted(stored["entries"]) == ["minilm-l6|cpu|threads=1|bf16=0|batch=16|length=32",
                                         "minilm-l6|cpu|threads=2|bf16=0|batch=16|length=32"]
    entry = stored["entries"]["minilm-l6|cpu|threads=2|bf16=0|batch=16|length=32"]
    assert entry["machine"] == machine_fingerprint() and set(entry["speed"]["step_s"]) == {"full"}
    entry["machine"]["host"] = "another-host"
    (tmp_path / SPEED_FILE).write_text(json.dumps(stored))
    measured_speed(base, ["full"], threads=2, now=2000.0 + STALE_AFTER_S, **kwargs)
    assert len(calls) == 5


def test_a_real_probe_of_minilm_returns_positive_finite_speeds():
    base = resolve_base("minilm-l6")
    started = time.perf_counter()
    speed = probe_speed(base, ["full"], batch_size=8, length=16, device="cpu", bf16=False, threads=1)
    assert time.perf_counter() - started < 30  # about 2 s on an idle core
    values = [*speed.step_s["full"].values(), *speed.forward_s.values(), speed.head_macs_per_s]
    assert all(v > 0 and math.isfinite(v) for v in values)
    assert (speed.params, speed.hidden, speed.batch_size, speed.length) == (22_713_986, 384, 8, 16)


def test_pseudo_label_caps_follow_the_labelled_rows_and_fit_the_pool():
    from tailor.train.estimate import pseudo_label_caps

    assert pseudo_label_caps([5, 2, 1], 1, 4.0, 1000) == [20, 8, 4]
    assert pseudo_label_caps([5, 2, 1], 2, 4.0, 1000) == [40, 16, 8]
    # 64 wanted from a pool of 30: each cut to 30/64 of its share, rounded down
    assert pseudo_label_caps([5, 2, 1], 2, 4.0, 30) == [18, 7, 3]
    assert pseudo_label_caps([3, 3], 1, 0.5, 10) == [1, 1]


def self_training_setup(pool_lengths, **overrides):
    from tailor.train.batching import Encoded
    from tailor.train.config import load_preset
    from tailor.train.estimate import self_training_rounds

    train = Encoded([[1] * 10 for _ in range(12)], [i % 3 for i in range(12)])  # 4 rows of each of 3 labels
    cfg = load_preset("default", **{"self_training_rounds": 2, "pseudo_label_growth": 4.0, **overrides})
    return self_training_rounds(train, [10] * 64, pool_lengths, cfg, "full")


def test_self_training_rounds_count_their_pseudo_labels_and_predictions():
    rounds = self_training_setup([10] * 100)
    # round 1: 1 x 4 x 4 rows per label = 48; round 2: 96; both fit the pool of 100
    assert [r.pseudo_labels for r in rounds] == [48, 96]
    assert [len(r.train_lengths) for r in rounds] == [60, 108]
    assert [r.predict_tokens for r in rounds] == [1000 + 640, 1000 + 640]  # the pool and the validation rows
    capped = self_training_setup([10] * 100, unlabeled_max_rows=60)  # the job uses at most 60 pool texts
    assert [r.pseudo_labels for r in capped] == [48, 60]
    assert capped[0].predict_tokens == 600 + 640
    # 1 pseudo-label per label (a third of 4, rounded down) from a pool of lengths 10..1: spread evenly over its
    # sorted lengths (the middles of three equal parts)
    spread = self_training_setup(list(range(10, 0, -1)), self_training_rounds=1, pseudo_label_growth=1 / 3)
    assert spread[0].train_lengths == [10] * 12 + [2, 6, 9]


def test_self_training_adds_a_stage_that_a_budget_governs():
    common = dict(train_lengths=[10] * 12, val_lengths=[10] * 64, n_test=0, num_labels=3, batch_size=16,
                  epochs=3, seed=0, head_epochs=300)
    plain = estimate_classification("full", SPEED, **common)
    est = estimate_classification("full", SPEED, self_training=self_training_setup([10] * 100), **common)
    # round 1: 60 rows, 3 epochs x 600 tokens x 1 ms + 3 x 4 steps x 50 ms = 2.4 s, validation 3 x 640 tokens x
    # 0.1 ms = 0.192 s, predicting the pool and validation rows 1640 tokens x 0.2 ms = 0.328 s: 2.92 s;
    # round 2: 108 rows, 3 x 1080 x 1 ms + 3 x 7 x 50 ms = 4.29 s, + 0.192 + 0.328: 4.81 s
    assert est.stages["self_training"] == 7.7
    assert list(est.stages) == ["data", "train", "validation", "self_training", "test", "explain", "gate", "save"]
    assert {k: v for k, v in est.stages.items() if k != "self_training"} == plain.stages
    assert "self_training" not in plain.stages
    assert est.total_s == round(plain.total_s + 7.7, 1)
    assert (est.training_s, est.per_epoch_s) == (round(plain.training_s + 7.7, 1), plain.per_epoch_s)
    assert "self_training 8s (2 rounds, up to 48 + 96 pseudo-labels)" in est.describe()
    cut = est.within(est.training_s / 2)
    assert cut.stages["self_training"] == round(7.7 / 2, 1)
    head = estimate_classification("head", SPEED, self_training=self_training_setup([10] * 100), **common)
    # each round: the 1640 predicted tokens x 0.2 ms, then a fresh head: 60 (108) + 64 rows embedded (10 tokens
    # x 0.2 ms each) and 300 steps x 60 (108) rows x 100 x 3 classes x 3 MACs
    assert head.stages["self_training"] == round(0.328 + 124 * 10 * 0.0002 + 300 * 60 * 100 * 3 * 3 / 1e9
                                                 + 0.328 + 172 * 10 * 0.0002 + 300 * 108 * 100 * 3 * 3 / 1e9, 1) == 1.3


def test_a_contrastive_rounds_fresh_model_draws_its_batches_from_the_pseudo_labels_too():
    from tailor.train.batching import Encoded
    from tailor.train.config import load_preset
    from tailor.train.estimate import contrastive_workload, self_training_rounds

    train = Encoded([[1] * 10 for _ in range(12)], [i % 3 for i in range(12)])
    cfg = load_preset("default", self_training_rounds=1, pseudo_label_growth=4.0, contrastive_batch_size=30,
                      contrastive_steps=7)
    (only,) = self_training_rounds(train, [10] * 64, [10] * 100, cfg, "contrastive")
    # 30 // 3 labels = 10 rows of each label per batch: the labelled rows alone have 4 per label, the round's
    # 4 + 16 enough; every row 10 tokens long
    assert contrastive_workload(train, cfg) == (7, 7 * 3 * 4 * 10)
    assert only.contrastive_work == (7, 7 * 3 * 10 * 10)
    assert self_training_rounds(train, [10] * 64, [10] * 100, cfg, "full")[0].contrastive_work == (0, 0)
