"""The store contract, run against every backend (see conftest.py)."""

import json
import sqlite3
import threading
from datetime import timezone

import pytest

from tailor.errors import NotFoundError, UsageError
from tailor.registry.sql import SqlRegistryStore

A, B = "acme", "globex"


def add(store, name="credit-risk", tenant=A, **overrides):
    fields = dict(
        task="classify",
        base_model="minilm-l6",
        method="lora",
        artifact_path=f"{tenant}/{name}/x",
        params={"lr": 0.001, "epochs": 3},
        metrics={"accuracy": 0.9},
        lineage={"dataset_sha256": "ab" * 32},
    )
    return store.create_version(tenant, name, **{**fields, **overrides})


def test_versions_are_numbered_from_one_and_round_trip(store):
    created = [add(store, artifact_path=f"acme/credit-risk/{n}") for n in range(3)]
    assert [v.version for v in created] == [1, 2, 3]
    assert store.list_versions(A, "credit-risk") == created
    second = store.get_version(A, "credit-risk", 2)
    assert second == created[1]
    assert (second.tenant, second.name, second.ref) == (A, "credit-risk", "credit-risk:2")
    assert (second.task, second.base_model, second.method, second.artifact_path) == (
        "classify", "minilm-l6", "lora", "acme/credit-risk/1")
    assert (second.params, second.metrics, second.lineage) == (
        {"lr": 0.001, "epochs": 3}, {"accuracy": 0.9}, {"dataset_sha256": "ab" * 32})
    assert second.created_at.tzinfo == timezone.utc
    assert second.aliases == ()


def test_to_dict_is_json_with_iso_utc_time(store):
    version = add(store)
    data = json.loads(json.dumps(version.to_dict()))
    assert set(data) == {"id", "tenant", "name", "version", "ref", "task", "base_model", "method",
                         "artifact_path", "params", "metrics", "lineage", "created_at", "aliases"}
    assert data["ref"] == "credit-risk:1"
    assert data["created_at"] == version.created_at.isoformat() and data["created_at"].endswith("+00:00")
    model = json.loads(json.dumps(store.get_model(A, "credit-risk").to_dict()))
    assert model["latest_version"] == 1 and model["aliases"] == {} and model["created_at"].endswith("+00:00")


def test_first_version_creates_the_model_with_its_description(store):
    add(store, description="scores loan applications")
    add(store, description="ignored: the model exists")
    model = store.get_model(A, "credit-risk")
    assert (model.tenant, model.name, model.description, model.latest_version, model.aliases) == (
        A, "credit-risk", "scores loan applications", 2, {})
    assert model.created_at.tzinfo == timezone.utc


def test_list_models_sorted_per_tenant_and_for_the_operator(store):
    for tenant, name in [(A, "zeta"), (B, "beta"), (A, "alpha")]:
        add(store, name, tenant)
    assert [m.name for m in store.list_models(A)] == ["alpha", "zeta"]
    assert [(m.tenant, m.name) for m in store.list_models()] == [(A, "alpha"), (A, "zeta"), (B, "beta")]
    assert store.list_models("nobody") == []


def test_resolve_every_ref_form(store):
    for _ in range(3):
        add(store)
    store.set_alias(A, "credit-risk", "production", 2)
    assert [store.resolve(A, ref).version for ref in
            ["credit-risk", "credit-risk@latest", "credit-risk:1", "credit-risk@production"]] == [3, 3, 1, 2]


def test_alias_moves_between_versions(store):
    for _ in range(2):
        add(store)
    store.set_alias(A, "credit-risk", "production", 1)
    store.set_alias(A, "credit-risk", "canary", 1)
    assert store.get_version(A, "credit-risk", 1).aliases == ("canary", "production")
    store.set_alias(A, "credit-risk", "production", 2)
    assert store.get_model(A, "credit-risk").aliases == {"canary": 1, "production": 2}
    assert [v.aliases for v in store.list_versions(A, "credit-risk")] == [("canary",), ("production",)]
    store.delete_alias(A, "credit-risk", "canary")
    assert store.get_model(A, "credit-risk").aliases == {"production": 2}


@pytest.mark.parametrize("call", ["set", "delete"])
def test_latest_alias_cannot_be_set_or_deleted(store, call):
    add(store)
    with pytest.raises(UsageError, match="^alias 'latest' is reserved"):
        if call == "set":
            store.set_alias(A, "credit-risk", "latest", 1)
        else:
            store.delete_alias(A, "credit-risk", "latest")


def test_create_version_validates_the_name(store):
    with pytest.raises(UsageError, match="^invalid model name 'Credit Risk'"):
        add(store, "Credit Risk")
    assert store.list_models() == []


def test_update_metrics_merges_keys(store):
    add(store)
    updated = store.update_metrics(A, "credit-risk", 1, {"f1": 0.8, "accuracy": 0.95})
    assert updated.metrics == {"accuracy": 0.95, "f1": 0.8}
    assert store.get_version(A, "credit-risk", 1).metrics == {"accuracy": 0.95, "f1": 0.8}


def test_delete_version_removes_its_aliases_and_never_reuses_its_number(store):
    for _ in range(3):
        add(store)
    store.set_alias(A, "credit-risk", "production", 3)
    deleted = store.delete_version(A, "credit-risk", 3)
    assert (deleted.version, deleted.aliases) == (3, ("production",))
    model = store.get_model(A, "credit-risk")
    assert (model.latest_version, model.aliases) == (2, {})
    assert add(store).version == 4
    assert [v.version for v in store.list_versions(A, "credit-risk")] == [1, 2, 4]


def test_model_without_versions_has_no_latest(store):
    add(store)
    store.delete_version(A, "credit-risk", 1)
    assert store.get_model(A, "credit-risk").latest_version is None
    assert store.list_versions(A, "credit-risk") == []
    with pytest.raises(NotFoundError, match=r"^model 'credit-risk' has no versions$"):
        store.resolve(A, "credit-risk")


def test_delete_model_returns_its_versions_and_frees_the_name(store):
    for _ in range(2):
        add(store)
    store.set_alias(A, "credit-risk", "production", 1)
    add(store, "other")
    deleted = store.delete_model(A, "credit-risk")
    assert [(v.ref, v.aliases) for v in deleted] == [("credit-risk:1", ("production",)), ("credit-risk:2", ())]
    assert [m.name for m in store.list_models(A)] == ["other"]
    assert add(store).version == 1


def test_alias_history_records_every_change_oldest_first(store):
    for _ in range(3):
        add(store)
    store.set_alias(A, "credit-risk", "production", 1)
    store.set_alias(A, "credit-risk", "production", 1)  # already there: no event
    store.set_alias(A, "credit-risk", "canary", 3)
    store.set_alias(A, "credit-risk", "production", 2)
    store.delete_alias(A, "credit-risk", "canary")
    store.set_alias(A, "credit-risk", "canary", 2)
    store.delete_version(A, "credit-risk", 2)
    history = store.alias_history(A, "credit-risk")
    assert [(e.alias, e.version, e.action) for e in history] == [
        ("production", 1, "set"), ("canary", 3, "set"), ("production", 2, "set"), ("canary", None, "unset"),
        ("canary", 2, "set"), ("canary", None, "version_deleted"), ("production", None, "version_deleted")]
    assert {(e.tenant, e.name) for e in history} == {(A, "credit-risk")}
    assert all(e.created_at.tzinfo == timezone.utc for e in history)
    assert [e.created_at for e in history] == sorted(e.created_at for e in history)
    first = json.loads(json.dumps(history[0].to_dict()))
    assert first == {"tenant": A, "name": "credit-risk", "alias": "production", "version": 1, "action": "set",
                     "created_at": history[0].created_at.isoformat(), "candidate": None, "actor": None,
                     "reason": None}
    assert store.get_model(A, "credit-risk").aliases == {}


def test_deleting_a_model_deletes_its_alias_history(store):
    add(store)
    store.set_alias(A, "credit-risk", "production", 1)
    store.delete_model(A, "credit-risk")
    add(store)
    assert store.alias_history(A, "credit-risk") == []


def test_a_refused_alias_change_records_nothing(store):
    add(store)
    for call in (lambda: store.set_alias(A, "credit-risk", "production", 7),
                 lambda: store.set_alias(A, "credit-risk", "latest", 1),
                 lambda: store.delete_alias(A, "credit-risk", "production")):
        with pytest.raises((NotFoundError, UsageError)):
            call()
    assert store.alias_history(A, "credit-risk") == []


NOT_FOUND = [
    (lambda s: s.get_model(A, "nope"), "model 'nope' not found"),
    (lambda s: s.list_versions(A, "nope"), "model 'nope' not found"),
    (lambda s: s.get_version(A, "nope", 1), "model 'nope' not found"),
    (lambda s: s.get_version(A, "credit-risk", 7), "version credit-risk:7 not found"),
    (lambda s: s.resolve(A, "nope"), "model 'nope' not found"),
    (lambda s: s.resolve(A, "credit-risk:7"), "version credit-risk:7 not found"),
    (lambda s: s.resolve(A, "credit-risk@prod"), "alias credit-risk@prod not found"),
    (lambda s: s.set_alias(A, "credit-risk", "prod", 7), "version credit-risk:7 not found"),
    (lambda s: s.set_alias(A, "nope", "prod", 1), "model 'nope' not found"),
    (lambda s: s.delete_alias(A, "credit-risk", "prod"), "alias credit-risk@prod not found"),
    (lambda s: s.update_metrics(A, "credit-risk", 7, {}), "version credit-risk:7 not found"),
    (lambda s: s.delete_version(A, "credit-risk", 7), "version credit-risk:7 not found"),
    (lambda s: s.delete_model(A, "nope"), "model 'nope' not found"),
    (lambda s: s.alias_history(A, "nope"), "model 'nope' not found"),
]


@pytest.mark.parametrize("call, message", NOT_FOUND, ids=[message for _, message in NOT_FOUND])
def test_not_found_messages(store, call, message):
    add(store)
    with pytest.raises(NotFoundError) as caught:
        call(store)
    assert str(caught.value) == message


ACROSS_TENANTS = {
    "get_model": lambda s: s.get_model(B, "credit-risk"),
    "list_versions": lambda s: s.list_versions(B, "credit-risk"),
    "get_version": lambda s: s.get_version(B, "credit-risk", 1),
    "resolve": lambda s: s.resolve(B, "credit-risk"),
    "resolve_alias": lambda s: s.resolve(B, "credit-risk@production"),
    "resolve_version": lambda s: s.resolve(B, "credit-risk:1"),
    "set_alias": lambda s: s.set_alias(B, "credit-risk", "mine", 1),
    "delete_alias": lambda s: s.delete_alias(B, "credit-risk", "production"),
    "update_metrics": lambda s: s.update_metrics(B, "credit-risk", 1, {"accuracy": 0.0}),
    "delete_version": lambda s: s.delete_version(B, "credit-risk", 1),
    "delete_model": lambda s: s.delete_model(B, "credit-risk"),
    "alias_history": lambda s: s.alias_history(B, "credit-risk"),
}


@pytest.mark.parametrize("call", ACROSS_TENANTS.values(), ids=ACROSS_TENANTS.keys())
def test_tenant_cannot_reach_another_tenants_objects(store, call):
    add(store)
    store.set_alias(A, "credit-risk", "production", 1)
    before = store.list_versions(A, "credit-risk")
    with pytest.raises(NotFoundError) as caught:
        call(store)
    assert str(caught.value) == "model 'credit-risk' not found"
    assert store.list_versions(A, "credit-risk") == before
    assert [(e.alias, e.version) for e in store.alias_history(A, "credit-risk")] == [("production", 1)]
    assert store.list_models(B) == []


def test_same_name_in_two_tenants_is_two_models(store):
    add(store, tenant=A)
    add(store, tenant=A)
    add(store, tenant=B, method="head")
    store.set_alias(B, "credit-risk", "production", 1)
    assert [v.version for v in store.list_versions(B, "credit-risk")] == [1]
    assert store.resolve(B, "credit-risk").method == "head"
    assert store.get_model(A, "credit-risk").aliases == {}
    store.delete_model(B, "credit-risk")
    assert [v.version for v in store.list_versions(A, "credit-risk")] == [1, 2]


def test_concurrent_writers_get_distinct_consecutive_versions(store):
    threads, per_thread = 8, 5
    barrier = threading.Barrier(threads)
    numbers, errors = [], []

    def write():
        barrier.wait()
        try:
            for _ in range(per_thread):
                numbers.append(add(store, "racy").version)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    workers = [threading.Thread(target=write) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, threads * per_thread + 1))
    assert [m.name for m in store.list_models(A)] == ["racy"]


def test_data_survives_reopening(store, db_url):
    add(store)
    store.set_alias(A, "credit-risk", "production", 1)
    reopened = SqlRegistryStore(db_url)
    try:
        assert reopened.resolve(A, "credit-risk@production") == store.get_version(A, "credit-risk", 1)
    finally:
        reopened.close()



def test_a_resolved_ref_is_kept_until_any_writer_changes_the_registry(store, db_url):
    """Another process's store (a second server, the CLI) moves an alias, updates, deletes: this store's next
    resolve sees each change; between changes it reads only the change count."""
    from sqlalchemy import event

    add(store, metrics={"accuracy": 0.8})
    add(store, metrics={"accuracy": 0.9})
    other = SqlRegistryStore(db_url)
    statements = []
    event.listen(store._engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        other.set_alias(A, "credit-risk", "production", 1)
        assert store.resolve(A, "credit-risk@production").version == 1
        statements.clear()
        assert store.resolve(A, "credit-risk@production").version == 1
        queries = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
        assert len(queries) == 1 and "registry_changes" in queries[0]  # cached: one small query
        other.set_alias(A, "credit-risk", "production", 2)
        assert store.resolve(A, "credit-risk@production").version == 2
        assert store.resolve(A, "credit-risk").version == 2
        other.update_metrics(A, "credit-risk", 2, {"accuracy": 0.95})
        assert store.resolve(A, "credit-risk").metrics == {"accuracy": 0.95}
        add(other)
        assert store.resolve(A, "credit-risk").version == 3
        other.delete_version(A, "credit-risk", 3)
        assert store.resolve(A, "credit-risk").version == 2
        other.delete_alias(A, "credit-risk", "production")
        with pytest.raises(NotFoundError, match="alias credit-risk@production not found"):
            store.resolve(A, "credit-risk@production")
        other.delete_model(A, "credit-risk")
        with pytest.raises(NotFoundError):
            store.resolve(A, "credit-risk")
    finally:
        other.close()

def test_sqlite_file_gets_its_directory_wal_and_foreign_keys(tmp_path):
    path = tmp_path / "deep" / "er" / "tailor.db"
    SqlRegistryStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.execute("PRAGMA foreign_keys = ON")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute("INSERT INTO aliases (model_id, alias, version) VALUES (99, 'x', 1)")
