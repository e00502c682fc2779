"""JobStore on every backend: the queue (claim, heartbeat, finish, recovery), user transitions, paging,
and tenant isolation."""

from __future__ import annotations

import threading

import pytest

from tailor.errors import ConflictError, NotFoundError
from tailor.jobs.store import MAX_ATTEMPTS, JobStore


@pytest.fixture
def store(db_url):
    return JobStore(db_url)


def new_job(store, tenant: str = "acme", training_file: str = "file-abc"):
    return store.create(tenant, model="minilm-l6", task="classification", training_file=training_file,
                        validation_file=None, suffix="s", seed=7, request={"overrides": {"epochs": 1}})


def messages(store, job, tenant: str = "acme") -> list[str]:
    return [e.message for e in store.events(tenant, job.id, limit=100)[0]]


def test_create_queues_the_job_with_two_events(store):
    job = new_job(store)
    assert (job.status, job.attempts, job.worker_id, job.seed, job.suffix) == ("queued", 0, None, 7, "s")
    assert job.id.startswith("ftjob-") and job.request == {"overrides": {"epochs": 1}}
    assert job.started_at is None and job.finished_at is None
    events, has_more = store.events("acme", job.id)
    assert [e.message for e in events] == ["Job queued", "Validated training file: file-abc"]
    assert [e.level for e in events] == ["info", "info"] and not has_more


def test_claim_takes_the_oldest_queued_job(store):
    first, second = new_job(store), new_job(store)
    claimed = store.claim("w1")
    assert claimed.id == first.id
    assert (claimed.status, claimed.worker_id, claimed.attempts) == ("running", "w1", 1)
    assert claimed.started_at is not None
    assert store.claim("w2").id == second.id
    assert store.claim("w3") is None


def test_concurrent_claims_give_each_job_to_exactly_one_worker(store):
    jobs = {new_job(store).id for _ in range(8)}
    claims: dict[str, list[str]] = {f"w{i}": [] for i in range(4)}
    barrier = threading.Barrier(4)

    def work(worker_id: str):
        barrier.wait()
        while (job := store.claim(worker_id)) is not None:
            claims[worker_id].append(job.id)

    threads = [threading.Thread(target=work, args=(w,)) for w in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    claimed = [job_id for ids in claims.values() for job_id in ids]
    assert sorted(claimed) == sorted(jobs)  # every job once, none twice
    for worker_id, ids in claims.items():
        for job_id in ids:
            job = store.get("acme", job_id)
            assert (job.status, job.worker_id, job.attempts) == ("running", worker_id, 1)


def test_heartbeat_while_running_then_stops_after_cancel(store):
    job = new_job(store)
    store.claim("w1")
    assert store.heartbeat(job.id, "w1") is True
    assert store.heartbeat(job.id, "w2") is False  # not this worker's job
    store.cancel("acme", job.id)
    assert store.heartbeat(job.id, "w1") is False


def test_heartbeat_stops_after_pause(store):
    job = new_job(store)
    store.claim("w1")
    assert store.pause("acme", job.id).status == "paused"
    assert store.heartbeat(job.id, "w1") is False


def test_finish_after_cancel_keeps_cancelled(store):
    job = new_job(store)
    store.claim("w1")
    cancelled = store.cancel("acme", job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert store.finish(job.id, "w1", "succeeded", fine_tuned_model="ft:x", message="done") is False
    after = store.get("acme", job.id)
    assert (after.status, after.fine_tuned_model, after.worker_id) == ("cancelled", None, None)
    assert "done" not in messages(store, job)


def test_finish_records_success(store):
    job = new_job(store)
    store.claim("w1")
    assert store.finish(job.id, "w1", "succeeded", fine_tuned_model="ft:x", result={"accuracy": 0.5},
                        message="all done") is True
    after = store.get("acme", job.id)
    assert (after.status, after.fine_tuned_model, after.result, after.worker_id) == (
        "succeeded", "ft:x", {"accuracy": 0.5}, None)
    assert after.finished_at is not None
    assert messages(store, job)[0] == "all done"


def test_pause_resume_is_claimable_only_after_release(store):
    job = new_job(store)
    store.claim("w1")
    store.pause("acme", job.id)
    resumed = store.resume("acme", job.id)
    assert (resumed.status, resumed.worker_id) == ("queued", "w1")
    assert store.claim("w2") is None  # the old worker has not let go yet
    store.release(job.id, "w1")
    assert store.get("acme", job.id).worker_id is None
    again = store.claim("w2")
    assert (again.id, again.worker_id, again.attempts) == (job.id, "w2", 2)
    assert messages(store, job)[:2] == ["Job resumed by the user; it continues from its last checkpoint",
                                        "Job paused by the user"]


def test_recover_lost_requeues_a_silent_job_with_a_warning(store):
    job = new_job(store)
    store.claim("w1")
    assert store.recover_lost(stale_after_s=3600) == []  # heartbeat is fresh
    assert store.recover_lost(stale_after_s=0) == [job.id]
    after = store.get("acme", job.id)
    assert (after.status, after.worker_id, after.attempts) == ("queued", None, 1)
    latest = store.events("acme", job.id, limit=1)[0][0]
    assert (latest.level, latest.data) == ("warn", {"worker_id": "w1"})
    assert latest.message == "Worker lost; job queued again and will resume from its last checkpoint"


def test_recover_lost_by_known_dead_worker(store):
    job, other = new_job(store), new_job(store)
    store.claim("dead")
    store.claim("alive")
    assert store.recover_lost(stale_after_s=3600, worker_ids=("dead",)) == [job.id]
    assert store.get("acme", other.id).status == "running"


def test_recover_lost_fails_the_job_after_max_attempts(store):
    job = new_job(store)
    for attempt in range(1, MAX_ATTEMPTS):
        assert store.claim(f"w{attempt}").attempts == attempt
        assert store.recover_lost(stale_after_s=0) == [job.id]
    assert store.claim("last").attempts == MAX_ATTEMPTS == 3
    assert store.recover_lost(stale_after_s=0) == [job.id]
    failed = store.get("acme", job.id)
    assert (failed.status, failed.worker_id) == ("failed", None)
    assert failed.error == {"code": "worker_lost", "param": None,
                            "message": "the job's worker stopped 3 times; giving up"}
    latest = store.events("acme", job.id, limit=1)[0][0]
    assert (latest.level, latest.message) == ("error", "Worker lost for the 3th time; job failed")
    assert store.claim("w9") is None


def test_requeue_on_shutdown_does_not_count_an_attempt(store):
    job = new_job(store)
    assert store.claim("w1").attempts == 1
    store.requeue(job.id, "w1", "Server stopping")
    after = store.get("acme", job.id)
    assert (after.status, after.worker_id, after.attempts) == ("queued", None, 0)
    assert messages(store, job)[0] == "Server stopping"
    assert store.claim("w2").attempts == 1


def test_events_newest_first_with_paging(store):
    job = new_job(store)
    for i in range(5):
        store.add_event(job.id, f"step {i}", type="metrics", data={"step": i})
    page, has_more = store.events("acme", job.id, limit=3)
    assert [e.message for e in page] == ["step 4", "step 3", "step 2"] and has_more
    assert page[0].to_openai()["data"] == {"step": 4} and page[0].type == "metrics"
    rest, has_more = store.events("acme", job.id, after=page[-1].to_openai()["id"], limit=3)
    assert [e.message for e in rest] == ["step 1", "step 0", "Job queued"] and has_more
    last, has_more = store.events("acme", job.id, after=rest[-1].to_openai()["id"], limit=3)
    assert [e.message for e in last] == ["Validated training file: file-abc"] and not has_more


def test_checkpoints_newest_first_with_paging(store):
    job = new_job(store)
    for step in (4, 8, 12):
        store.add_checkpoint(job.id, step, {"valid_loss": 1.0 / step})
    page, has_more = store.checkpoints("acme", job.id, limit=2)
    assert [c.step for c in page] == [12, 8] and has_more
    assert page[0].metrics == {"valid_loss": 1.0 / 12}
    rest, has_more = store.checkpoints("acme", job.id, after=f"ftckpt-{page[-1].id}", limit=2)
    assert [c.step for c in rest] == [4] and not has_more
    opened = rest[0].to_openai("ft:m")
    assert opened["fine_tuned_model_checkpoint"] == "ft:m:ckpt-step-4" and opened["step_number"] == 4


def test_cancel_of_a_finished_job_conflicts(store):
    job = new_job(store)
    store.claim("w1")
    store.finish(job.id, "w1", "succeeded", message="done")
    with pytest.raises(ConflictError) as raised:
        store.cancel("acme", job.id)
    assert str(raised.value) == f"cannot cancel job {job.id}: its status is succeeded"
    with pytest.raises(ConflictError) as raised:
        store.resume("acme", job.id)
    assert str(raised.value) == f"cannot resume job {job.id}: its status is succeeded"


def test_uses_file_counts_unfinished_jobs_only(store):
    job = new_job(store, training_file="file-1")
    new_job(store, tenant="globex", training_file="file-1")
    assert store.uses_file("acme", "file-1") == [job.id]
    store.cancel("acme", job.id)
    assert store.uses_file("acme", "file-1") == []


@pytest.mark.parametrize("sealed", [False, True])
def test_uses_file_counts_the_unlabeled_file_of_an_unfinished_job(db_url, tmp_path, sealed):
    from pydantic import SecretStr

    from tailor.settings import Settings

    from api_helpers import new_master_key

    key = SecretStr(new_master_key()) if sealed else None
    store = JobStore(db_url, Settings(home=tmp_path / "home", database_url=db_url, master_key=key))
    request = {"overrides": {}, "method": {"type": "supervised", "tailor": {"unlabeled_file": "file-pool"}}}
    first, second = (store.create("acme", model="minilm-l6", task="classification", training_file=training_file,
                                  validation_file=None, suffix=None, seed=0, request=request)
                     for training_file in ("file-a", "file-b"))
    other = store.create("globex", model="minilm-l6", task="classification", training_file="file-c",
                         validation_file=None, suffix=None, seed=0, request=request)
    assert first.unlabeled_file == "file-pool" and new_job(store).unlabeled_file is None
    assert store.uses_file("acme", "file-pool") == [first.id, second.id]
    assert store.uses_file("acme", "file-b") == [second.id]
    store.pause("acme", first.id)  # a paused job resumes later: still a user of its files
    assert store.uses_file("acme", "file-pool") == [first.id, second.id]
    store.cancel("acme", first.id)
    store.cancel("acme", second.id)
    assert store.uses_file("acme", "file-pool") == []
    assert store.uses_file("globex", "file-pool") == [other.id]


def test_list_newest_first_with_paging(store):
    ids = [new_job(store).id for _ in range(3)]
    page, has_more = store.list("acme", limit=2)
    assert [j.id for j in page] == ids[::-1][:2] and has_more
    rest, has_more = store.list("acme", after=page[-1].id, limit=2)
    assert [j.id for j in rest] == [ids[0]] and not has_more


def test_tenants_never_see_each_others_jobs(store):
    job = new_job(store)
    other = new_job(store, tenant="globex")
    assert [j.id for j in store.list("globex")[0]] == [other.id]
    assert {j.id for j in store.list(None)[0]} == {job.id, other.id}
    for call in (store.get, store.cancel, store.pause, store.resume, store.events, store.checkpoints):
        with pytest.raises(NotFoundError) as raised:
            call("globex", job.id)
        assert str(raised.value) == f"fine-tuning job {job.id!r} not found"
    with pytest.raises(NotFoundError):
        store.list("globex", after=job.id)
    assert store.get("acme", job.id).status == "queued"
    assert messages(store, job) == ["Job queued", "Validated training file: file-abc"]
