"""The micro-batcher: batched results equal unbatched ones, requests share batches, errors and a full queue."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

TEXTS = ["The company reported a record profit this quarter.", "Shares fell.",
         "Net sales decreased by 12 percent compared with the previous year, the board said on Monday.",
         "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
         "Nothing to report.", "The deal is expected to close in the second half of the year.", "Up.",
         "Finnish electronics maker Elcoteq said its quarterly loss widened because of weak demand."]


@pytest.fixture(scope="module")
def bases(head_artifact):
    """The shared base graphs the session's head version was trained (and gated) with."""
    from tailor.models.runtimes import SharedBases

    home = head_artifact[0].parents[3]  # <home>/artifacts/<tenant>/<name>/<id>
    return SharedBases(home / "cache" / "onnx", threads=2)


@pytest.fixture(scope="module")
def runtime(head_artifact, bases):
    """The session's head version on ONNX Runtime fp32."""
    from tailor.models.runtimes import load_runtime

    return load_runtime(head_artifact[0], bases, runtime="onnx-fp32")


class Gate:
    """A runtime that waits for ``release`` before each forward pass, so a test can fill the queue first."""

    def __init__(self, inner):
        self.inner, self.release, self.calls = inner, threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, input_ids, attention_mask):
        self.release.wait(10)
        self.calls.append(input_ids.shape)
        return self.inner.logits(input_ids, attention_mask)


def batched_and_alone(runtime):
    """Every request's result when the requests arrive together, and when each runs alone."""
    from tailor.serve.batching import MicroBatcher, score_texts

    requests = [TEXTS[i:i + 1 + i % 3] for i in range(len(TEXTS))]
    batches = []
    batcher = MicroBatcher(window_s=0.05, on_batch=lambda texts, n, s: batches.append((texts, n)))

    async def all_at_once():
        return await asyncio.gather(*(batcher.score(("m",), runtime, texts) for texts in requests))

    try:
        results = asyncio.run(all_at_once())
    finally:
        batcher.stop()
    assert sum(n for _, n in batches) == len(requests) and len(batches) < len(requests)  # they shared batches
    assert sum(t for t, _ in batches) == sum(len(r) for r in requests)
    return requests, results, [score_texts(runtime, texts) for texts in requests]


def test_concurrent_requests_share_batches_and_get_their_own_rows(runtime):
    for texts, got, alone in zip(*batched_and_alone(runtime)):
        assert got.probs.shape == (len(texts), len(runtime.labels))
        assert got.probs == pytest.approx(alone.probs, abs=1e-5)
        assert got.tokens == alone.tokens == [len(runtime.tokenizer(t)["input_ids"]) for t in texts]


def test_on_int8_a_text_gets_the_same_answer_batched_or_alone(head_artifact, bases):
    """int8 activations are scaled per token row, so neighbours and padding cannot move a text's result
    (dynamic per-tensor scales moved probabilities by up to 0.06 here and could change labels)."""
    from tailor.models.runtimes import load_runtime

    int8 = load_runtime(head_artifact[0], bases, runtime="onnx-int8")
    for texts, got, alone in zip(*batched_and_alone(int8)):
        assert list(got.probs.argmax(1)) == list(alone.probs.argmax(1))
        assert got.probs == pytest.approx(alone.probs, abs=1e-5)


def test_a_batch_pads_each_length_bucket_only_to_its_own_longest_text(runtime):
    from tailor.serve.batching import score_texts

    gate = Gate(runtime)
    gate.release.set()
    long_text = " ".join(TEXTS)
    texts = [long_text] + ["Up."] * 3
    scored = score_texts(gate, texts, bucket_size=3)
    assert scored.tokens[1:] == [4, 4, 4] and scored.tokens[0] > 80  # [CLS] up . [SEP]
    assert gate.calls == [(3, 4), (1, scored.tokens[0])]  # the three short texts, then the long one alone
    assert scored.probs[1:] == pytest.approx(np.repeat(scored.probs[1:2], 3, axis=0))


def test_requests_for_models_that_share_no_graph_never_share_a_batch(runtime, head_artifact, bases):
    from tailor.models.runtimes import load_runtime
    from tailor.serve.batching import MicroBatcher

    runtimes = [runtime, load_runtime(head_artifact[0], bases, runtime="onnx-int8")]  # two sessions
    seen = []
    batcher = MicroBatcher(window_s=0.05, on_batch=lambda texts, n, s: seen.append(n))

    async def mixed():
        return await asyncio.gather(*(batcher.score((f"m{i % 2}",), runtimes[i % 2], [TEXTS[i]]) for i in range(6)))

    try:
        results = asyncio.run(mixed())
    finally:
        batcher.stop()
    assert sorted(seen) == [3, 3] and len(results) == 6


def test_a_full_queue_answers_busy_and_a_failing_model_fails_only_its_requests(runtime):
    from tailor.errors import UnavailableError
    from tailor.serve.batching import MicroBatcher, ServerBusy

    gate = Gate(runtime)
    batcher = MicroBatcher(window_s=0, max_pending=3)

    class Broken:
        labels, max_length, pad_id, tokenizer = runtime.labels, runtime.max_length, runtime.pad_id, runtime.tokenizer

        def logits(self, input_ids, attention_mask):
            raise RuntimeError("graph exploded")

    async def scenario():
        first = asyncio.ensure_future(batcher.score(("gate",), gate, TEXTS[:1]))
        await asyncio.sleep(0.2)  # the math thread is now holding the first request
        queued = asyncio.ensure_future(batcher.score(("gate",), gate, TEXTS[1:4]))
        await asyncio.sleep(0.05)
        with pytest.raises(ServerBusy, match=r"the server is busy \(3 texts queued\); retry shortly"):
            await batcher.score(("gate",), gate, TEXTS[4:5])
        gate.release.set()
        await asyncio.gather(first, queued)
        with pytest.raises(RuntimeError, match="graph exploded"):
            await batcher.score(("broken",), Broken(), TEXTS[:2])
        return await batcher.score(("gate",), gate, TEXTS[:2])  # the thread lives on

    try:
        after = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert after.probs.shape == (2, len(runtime.labels)) and issubclass(ServerBusy, UnavailableError)


def test_the_http_loop_keeps_a_core_only_when_there_are_more_than_two():
    from tailor.serve.batching import split_cores

    assert split_cores([0]) == ([0], [0])
    assert split_cores([0, 1]) == ([0, 1], [0, 1])
    assert split_cores([0, 1, 2, 3]) == ([0], [1, 2, 3])


def test_head_versions_over_one_base_share_the_encoder_pass_and_keep_their_own_heads(head_artifact, bases, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from tailor.models.runtimes import load_runtime
    from tailor.serve.batching import MicroBatcher, score_texts

    other = tmp_path / "other-tenant"
    shutil.copytree(head_artifact[0], other)
    weights = load_file(str(other / "head.safetensors"))
    save_file({"weight": -weights["weight"], "bias": weights["bias"]}, str(other / "head.safetensors"))
    mine, theirs = (load_runtime(d, bases, runtime="onnx-fp32") for d in (head_artifact[0], other))
    assert mine.batch_key == theirs.batch_key and mine.session is theirs.session
    batches = []
    batcher = MicroBatcher(window_s=0.05, on_batch=lambda texts, n, s: batches.append(n))

    async def both():
        return await asyncio.gather(batcher.score(("mine",), mine, TEXTS[:3]), batcher.score(("theirs",), theirs,
                                                                                             TEXTS[3:]))

    try:
        got_mine, got_theirs = asyncio.run(both())
    finally:
        batcher.stop()
    assert batches == [2]  # one pass for both tenants
    assert got_mine.probs == pytest.approx(score_texts(mine, TEXTS[:3]).probs, abs=1e-5)
    assert got_theirs.probs == pytest.approx(score_texts(theirs, TEXTS[3:]).probs, abs=1e-5)
    assert not np.allclose(got_theirs.probs, score_texts(mine, TEXTS[3:]).probs, atol=1e-3)  # its own head


def test_plan_buckets_groups_similar_lengths_and_keeps_the_size_limit():
    from tailor.serve.batching import plan_buckets

    lengths = [90, 5, 6, 5, 88, 7, 6, 95]
    assert plan_buckets(lengths, 32, call_cost=32) == [[1, 3, 2, 6, 5], [4, 0, 7]]
    assert plan_buckets(lengths, 32, call_cost=10_000) == [[1, 3, 2, 6, 5, 4, 0, 7]]  # calls dearer than padding
    free_calls = plan_buckets(lengths, 2, call_cost=0)  # with free passes nothing is ever padded
    assert all(len(b) <= 2 for b in free_calls)
    assert sum(len(b) * max(lengths[i] for i in b) for b in free_calls) == sum(lengths)
    assert sorted(i for b in plan_buckets(lengths, 3) for i in b) == list(range(len(lengths)))
    assert plan_buckets([], 32) == []
    # two lanes: the one pass is halved so both cores work; a lone text stays one pass
    assert plan_buckets(lengths, 32, call_cost=10_000, lanes=2) == [[1, 3, 2, 6], [5, 4, 0, 7]]
    assert plan_buckets(lengths, 32, call_cost=32, lanes=3) == [[1, 3, 2, 6, 5], [4], [0, 7]]  # the costliest halved
    assert plan_buckets([12], 32, lanes=2) == [[0]]
    assert plan_buckets([], 32, lanes=2) == []
