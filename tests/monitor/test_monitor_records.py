"""The prediction records' store on every backend, and the recorder that writes them off the request path."""

import threading
import time
from datetime import timedelta

import pytest

from tailor.db import now
from tailor.errors import NotFoundError
from tailor.monitor.recorder import Recorder
from tailor.monitor.records import PredictionRecord, PredictionStore, new_id


@pytest.fixture
def store(db_url):
    return PredictionStore(db_url)


def _chat(tenant="acme", model="ft:chat", stored=True, metadata=None, created=None, text="hello") -> PredictionRecord:
    return PredictionRecord(id=new_id("chat.completion"), tenant=tenant, kind="chat.completion", model=model,
                            model_name="chat", version=1, created_at=created or now(), output=text,
                            input={"messages": [{"role": "user", "content": "hi", "name": None}]} if stored else None,
                            metadata=metadata, details={"created": 1, "finish_reason": "stop"})


def _label(tenant="acme", created=None) -> PredictionRecord:
    return PredictionRecord(id=new_id("classification"), tenant=tenant, kind="classification", model="sent@prod",
                            model_name="sent", version=2, created_at=created or now(), label="positive", score=0.9,
                            scores={"negative": 0.1, "positive": 0.9}, prompt_tokens=7, latency_ms=3.25)


def test_records_round_trip_exactly_and_stay_with_their_tenant(store):
    record = _label()
    store.add([record, _chat()])
    assert store.get("acme", record.id) == record
    assert store.count("acme") == 2 and store.count("acme", "classification") == 1
    with pytest.raises(NotFoundError, match=f"prediction '{record.id}' not found"):
        store.get("globex", record.id)
    assert store.tenants() == ["acme"]


def test_new_ids_follow_openai_prefixes():
    assert [new_id(k)[:new_id(k).index("-") + 1] for k in ("classification", "embedding", "chat.completion",
                                                           "text_completion")] == ["pred-", "emb-", "chatcmpl-", "cmpl-"]
    assert len(new_id("classification")) == len("pred-") + 24


def test_stored_completions_list_filters_pages_and_orders(store):
    start = now() - timedelta(minutes=10)
    records = [_chat(metadata={"team": "a" if i % 2 else "b"}, created=start + timedelta(seconds=i)) for i in range(5)]
    store.add(records + [_chat(stored=False), _chat(tenant="globex"), _chat(model="other")])
    ids = [r.id for r in records]
    page, more = store.list_stored("acme", "chat.completion", model="ft:chat", limit=2)
    assert [r.id for r in page] == ids[:2] and more is True
    page, more = store.list_stored("acme", "chat.completion", model="ft:chat", after=ids[1], limit=10)
    assert [r.id for r in page] == ids[2:] and more is False
    page, _ = store.list_stored("acme", "chat.completion", model="ft:chat", metadata={"team": "a"})
    assert [r.id for r in page] == [ids[1], ids[3]]
    page, _ = store.list_stored("acme", "chat.completion", model="ft:chat", newest_first=True, after=ids[3])
    assert [r.id for r in page] == [ids[2], ids[1], ids[0]]
    assert len(store.list_stored("acme", "chat.completion")[0]) == 6  # the other model's too, not the unstored one
    with pytest.raises(NotFoundError):
        store.list_stored("globex", "chat.completion", after=ids[0])


def test_stored_records_update_and_delete_only_for_their_tenant(store):
    record, unstored = _chat(metadata={"a": "1"}), _chat(stored=False)
    store.add([record, unstored])
    assert store.update_metadata("acme", record.id, "chat.completion", {"b": "2"}).metadata == {"b": "2"}
    assert store.get("acme", record.id).metadata == {"b": "2"}
    for tenant, rid in (("globex", record.id), ("acme", unstored.id)):
        with pytest.raises(NotFoundError, match="stored completion"):
            store.update_metadata(tenant, rid, "chat.completion", {})
        with pytest.raises(NotFoundError):
            store.delete(tenant, rid, "chat.completion")
    store.delete("acme", record.id, "chat.completion")
    assert store.count("acme") == 1


def test_prune_drops_old_records_then_the_oldest_beyond_the_row_limit(store):
    start = now() - timedelta(days=40)
    old = [_label(created=start + timedelta(hours=i)) for i in range(3)]            # 40 days old
    recent = [_label(created=now() - timedelta(minutes=50 - i)) for i in range(6)]  # the last hour
    store.add(old + recent + [_label(tenant="globex", created=start)])
    assert store.prune("acme", now() - timedelta(days=30), keep_rows=4) == 3 + 2
    assert {store.get("acme", r.id).id for r in recent[2:]} == {r.id for r in recent[2:]}
    for gone in old + recent[:2]:
        with pytest.raises(NotFoundError):
            store.get("acme", gone.id)
    assert store.count("globex") == 1  # another tenant's records are its own limits' business
    assert store.prune("acme", now() - timedelta(days=30), keep_rows=4) == 0


class _FlakyStore:
    """A store whose writes fail while ``down`` is set."""

    def __init__(self):
        self.rows, self.down, self.writes = [], False, 0

    def add(self, records):
        self.writes += 1
        if self.down:
            raise ConnectionError("database away")
        self.rows.extend(records)

    def tenants(self):
        return []


def test_the_recorder_batches_writes_keeps_records_through_a_failed_write_and_caps_its_backlog():
    flaky = _FlakyStore()
    recorder = Recorder(flaky, lambda tenant: (30, 100), max_pending=5)
    batch = [_label() for _ in range(3)]
    recorder.add(batch)
    assert flaky.rows == [] and recorder.pending == 3  # nothing written on the request path
    flaky.down = True
    assert recorder.flush() == 0 and recorder.pending == 3 and recorder.failures == 1
    more = [_label() for _ in range(3)]
    recorder.add(more)                                 # 6 waiting, cap 5: the oldest goes, counted
    assert recorder.pending == 5 and recorder.dropped == 1
    flaky.down = False
    assert recorder.flush() == 5
    assert flaky.rows == batch[1:] + more and recorder.written == 5 and recorder.pending == 0


def test_the_recorder_thread_writes_within_its_flush_interval_and_on_stop(store):
    recorder = Recorder(store, lambda tenant: (30, 100), flush_s=0.05)
    recorder.start()
    try:
        recorder.add([_label()])
        deadline = time.monotonic() + 5
        while store.count("acme") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.count("acme") == 1
        recorder.flush_s = 60  # the next record waits for stop()
        time.sleep(0.1)
        recorder.add([_label()])
    finally:
        recorder.stop()
    assert store.count("acme") == 2 and recorder.written == 2


def test_the_recorder_prunes_each_tenant_to_its_own_limits(store):
    store.add([_label(created=now() - timedelta(minutes=i)) for i in range(5)] +
              [_label(tenant="globex", created=now() - timedelta(minutes=i)) for i in range(5)])
    recorder = Recorder(store, lambda tenant: (30, 2 if tenant == "acme" else 4))
    assert recorder.prune() == 3 + 1 and recorder.pruned == 4
    assert (store.count("acme"), store.count("globex")) == (2, 4)


def test_adding_from_many_threads_loses_nothing(store):
    recorder = Recorder(store, lambda tenant: (30, 10_000), max_batch=7)
    threads = [threading.Thread(target=lambda: [recorder.add([_label()]) for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.stop()
    assert store.count("acme") == 200 and recorder.written == 200


def test_feedback_joins_give_labelled_texts_and_corrected_chat_rows(store, db_url):
    from tailor.monitor.feedback import Feedback, FeedbackStore

    feedback = FeedbackStore(db_url)
    start = now() - timedelta(minutes=5)
    labelled = [_label(created=start + timedelta(seconds=i)) for i in range(3)]
    labelled = [PredictionRecord(**{**r.__dict__, "input": {"text": f"text {i}"}}) for i, r in enumerate(labelled)]
    unstored, other = _label(created=start), _label(tenant="globex", created=start)
    chats = [_chat(created=start), _chat(created=start + timedelta(seconds=1)), _chat(stored=False)]
    store.add(labelled + [unstored, other] + chats)
    feedback.put([Feedback("acme", labelled[2].id, label="negative"), Feedback("acme", labelled[0].id, label="positive"),
                  Feedback("acme", unstored.id, label="negative"), Feedback("globex", other.id, label="negative"),
                  Feedback("acme", chats[1].id, rating="down", correction="Hello! How can I help?"),
                  Feedback("acme", chats[0].id, rating="up"),
                  Feedback("acme", chats[2].id, rating="down", correction="not stored: no conversation to keep")])
    assert feedback.labelled_texts("acme", ["sent"]) == [("text 0", "positive"), ("text 2", "negative")]
    assert feedback.labelled_texts("acme", ["other"]) == [] and feedback.labelled_texts("globex", ["sent"]) == []
    assert feedback.corrections("acme", "chat") == [{"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]}]
    assert feedback.corrections("globex", "chat") == []


def test_answers_can_be_only_the_stored_and_the_newest(store):
    start = now() - timedelta(minutes=5)
    records = [PredictionRecord(**{**_label(created=start + timedelta(seconds=i)).__dict__,
                                   "input": {"text": f"t{i}"} if i % 2 else None}) for i in range(6)]
    store.add(records)
    window = (start - timedelta(seconds=1), now())
    assert [r.id for r in store.answers("acme", "sent", 2, *window)] == [r.id for r in records]
    assert [r.id for r in store.answers("acme", "sent", 2, *window, stored=True)] == [records[i].id for i in (1, 3, 5)]
    assert [r.id for r in store.answers("acme", "sent", 2, *window, stored=True, newest=2)] == [
        records[3].id, records[5].id]
