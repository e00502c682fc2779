"""Releases through an alias in the store: canary and shadow candidates, promote, rollback, abort; the history
with actor and reason; every refusal with its message; tenant isolation; the cached route seeing each change."""

import pytest

from tailor.errors import ConflictError, NotFoundError, UsageError
from tailor.registry.entities import Alias, Candidate
from tailor.registry.release import version_before_last_move
from tailor.registry.sql import SqlRegistryStore

A, B = "acme", "globex"
BOT = "acme/release-bot (key_0123456789abcdef)"


def add(store, name="credit-risk", tenant=A, task="classify"):
    return store.create_version(tenant, name, task=task, base_model="minilm-l6", method="head",
                                artifact_path=f"{tenant}/{name}/x", params={}, metrics={}, lineage={})


@pytest.fixture
def three(store):
    """acme's credit-risk with versions 1-3 and @prod on 1."""
    for _ in range(3):
        add(store)
    store.set_alias(A, "credit-risk", "prod", 1, actor=BOT, reason="first release")
    return store


def events(store, tenant=A):
    return [(e.alias, e.version, e.action, e.candidate, e.actor, e.reason)
            for e in store.alias_history(tenant, "credit-risk")]


def test_canary_then_promote_then_rollback_twice(three):
    store = three
    alias = store.set_candidate(A, "credit-risk", "prod", 2, "canary", 0.1, actor=BOT, reason="try v2")
    assert alias == Alias(A, "credit-risk", "prod", 1, Candidate(2, "canary", 0.1))
    assert store.get_alias(A, "credit-risk", "prod") == alias
    assert store.get_model(A, "credit-risk").aliases == {"prod": 1}  # the candidate is no move
    assert store.promote(A, "credit-risk", "prod", actor="cli:ana", reason="v2 looks good") == Alias(
        A, "credit-risk", "prod", 2, None)
    assert store.rollback(A, "credit-risk", "prod", actor="cli:ana", reason="complaints") == Alias(
        A, "credit-risk", "prod", 1, None)
    assert store.rollback(A, "credit-risk", "prod", actor="cli:ana").version == 2  # undoes the rollback
    assert events(store) == [
        ("prod", 1, "set", None, BOT, "first release"),
        ("prod", 1, "canary", Candidate(2, "canary", 0.1), BOT, "try v2"),
        ("prod", 2, "promote", None, "cli:ana", "v2 looks good"),
        ("prod", 1, "rollback", None, "cli:ana", "complaints"),
        ("prod", 2, "rollback", None, "cli:ana", None)]
    assert store.alias_history(A, "credit-risk")[1].to_dict()["candidate"] == {
        "version": 2, "mode": "canary", "share": 0.1}


def test_shadow_replaced_by_canary_then_aborted_and_promote_to_a_given_version(three):
    store = three
    assert store.set_candidate(A, "credit-risk", "prod", 2, "shadow").candidate == Candidate(2, "shadow", None)
    store.set_candidate(A, "credit-risk", "prod", 2, "shadow")  # the same candidate again: no event
    assert store.set_candidate(A, "credit-risk", "prod", 3, "canary", 0.5).candidate == Candidate(3, "canary", 0.5)
    assert store.clear_candidate(A, "credit-risk", "prod", reason="bad latency") == Alias(
        A, "credit-risk", "prod", 1, None)
    store.set_candidate(A, "credit-risk", "prod", 2, "canary", 0.2)
    assert store.promote(A, "credit-risk", "prod", 3) == Alias(A, "credit-risk", "prod", 3, None)
    assert [(e[1], e[2], e[3], e[5]) for e in events(store)] == [
        (1, "set", None, "first release"), (1, "shadow", Candidate(2, "shadow", None), None),
        (1, "canary", Candidate(3, "canary", 0.5), None), (1, "abort", None, "bad latency"),
        (1, "canary", Candidate(2, "canary", 0.2), None), (3, "promote", None, None)]


def test_a_plain_move_ends_a_release_and_deleting_the_candidate_stops_it(three):
    store = three
    store.set_candidate(A, "credit-risk", "prod", 2, "canary", 0.3)
    store.set_alias(A, "credit-risk", "prod", 1, actor=BOT)  # the same version, but the canary ends
    assert store.get_alias(A, "credit-risk", "prod").candidate is None
    store.set_candidate(A, "credit-risk", "prod", 3, "shadow")
    store.delete_version(A, "credit-risk", 3)
    assert store.get_alias(A, "credit-risk", "prod") == Alias(A, "credit-risk", "prod", 1, None)
    assert [(e[1], e[2], e[4], e[5]) for e in events(store)][-3:] == [
        (1, "set", BOT, None), (1, "shadow", None, None), (1, "abort", None, "its candidate (version 3) was deleted")]


REFUSALS = [
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 2, "canary", 1.0), UsageError,
     "share must be between 0 and 1 (exclusive), got 1"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 2, "canary", 0.0), UsageError,
     "share must be between 0 and 1 (exclusive), got 0"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 2, "canary"), UsageError,
     "a canary needs a share: the fraction of requests it answers, between 0 and 1"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 2, "shadow", 0.5), UsageError,
     "share applies to a canary; a shadow sees a copy of every request"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 2, "blue-green"), UsageError,
     "unknown release mode 'blue-green'; modes are: canary, shadow"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 1, "canary", 0.1), ConflictError,
     "credit-risk@prod already points at credit-risk:1; a candidate must be another version"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 9, "canary", 0.1), NotFoundError,
     "version credit-risk:9 not found"),
    (lambda s: s.set_candidate(A, "credit-risk", "beta", 2, "canary", 0.1), NotFoundError,
     "alias credit-risk@beta not found"),
    (lambda s: s.set_candidate(A, "credit-risk", "prod", 2, "canary", 0.1, reason="x" * 1001), UsageError,
     "reason: at most 1000 characters, got 1001"),
    (lambda s: s.promote(A, "credit-risk", "prod"), ConflictError,
     "credit-risk@prod has no candidate to promote: start a canary or a shadow first, or give the version to "
     "promote"),
    (lambda s: s.promote(A, "credit-risk", "prod", 1), ConflictError,
     "credit-risk@prod already points at credit-risk:1"),
    (lambda s: s.promote(A, "credit-risk", "prod", 9), NotFoundError, "version credit-risk:9 not found"),
    (lambda s: s.rollback(A, "credit-risk", "prod"), ConflictError,
     "credit-risk@prod has no earlier version to roll back to"),
    (lambda s: s.rollback(A, "credit-risk", "beta"), NotFoundError, "alias credit-risk@beta not found"),
    (lambda s: s.clear_candidate(A, "credit-risk", "prod"), ConflictError,
     "credit-risk@prod has no canary or shadow to stop"),
    (lambda s: s.set_candidate(A, "credit-risk", "latest", 2, "canary", 0.1), UsageError,
     "alias 'latest' is reserved: it always means the highest version"),
]


@pytest.mark.parametrize("call, error, message", REFUSALS, ids=[r[2][:60] for r in REFUSALS])
def test_refusals_say_why_and_record_nothing(three, call, error, message):
    with pytest.raises(error) as caught:
        call(three)
    assert type(caught.value) is error and str(caught.value) == message
    assert [e[2] for e in events(three)] == ["set"]


def test_a_chat_candidate_or_a_chat_shadow_is_refused(store):
    add(store, name="helper", task="chat")
    add(store, name="helper", task="chat")
    store.set_alias(A, "helper", "prod", 1)
    with pytest.raises(UsageError) as caught:
        store.set_candidate(A, "helper", "prod", 2, "shadow")
    assert str(caught.value) == ("shadow is for classifiers: helper:2 is a chat model; try it out with a canary "
                                 "instead")
    assert store.set_candidate(A, "helper", "prod", 2, "canary", 0.5).candidate == Candidate(2, "canary", 0.5)


def test_rollback_to_a_deleted_version_or_past_a_removal_is_refused(three):
    store = three
    store.set_alias(A, "credit-risk", "prod", 2)
    store.delete_version(A, "credit-risk", 1)
    with pytest.raises(ConflictError, match=r"^credit-risk@prod pointed at credit-risk:1 before its last move, and "
                                            "that version was deleted; point the alias at a version instead$"):
        store.rollback(A, "credit-risk", "prod")
    store.delete_alias(A, "credit-risk", "prod")
    store.set_alias(A, "credit-risk", "prod", 3)
    with pytest.raises(ConflictError, match="^credit-risk@prod has no earlier version to roll back to$"):
        store.rollback(A, "credit-risk", "prod")


ACROSS_TENANTS = [
    lambda s: s.get_alias(B, "credit-risk", "prod"),
    lambda s: s.set_candidate(B, "credit-risk", "prod", 2, "canary", 0.1),
    lambda s: s.clear_candidate(B, "credit-risk", "prod"),
    lambda s: s.promote(B, "credit-risk", "prod", 2),
    lambda s: s.rollback(B, "credit-risk", "prod"),
    lambda s: s.route(B, "credit-risk@prod"),
]


@pytest.mark.parametrize("call", ACROSS_TENANTS, ids=["get", "candidate", "abort", "promote", "rollback", "route"])
def test_another_tenant_sees_no_alias(three, call):
    add(three, name="other", tenant=B)  # globex has a model of its own
    with pytest.raises(NotFoundError) as caught:
        call(three)
    assert str(caught.value) == "model 'credit-risk' not found"
    assert [e[2] for e in events(three)] == ["set"]


def test_the_cached_route_sees_every_release_change_of_another_process(three, db_url):
    store, other = three, SqlRegistryStore(db_url)
    try:
        route = store.route(A, "credit-risk@prod")
        assert (route.version.version, route.alias, route.candidate, route.mode, route.share) == (
            1, "prod", None, None, None)
        assert store.route(A, "credit-risk@prod") is route  # kept while nothing changes
        other.set_candidate(A, "credit-risk", "prod", 2, "canary", 0.25)
        route = store.route(A, "credit-risk@prod")
        assert (route.version.version, route.candidate.ref, route.mode, route.share) == (1, "credit-risk:2", "canary",
                                                                                        0.25)
        other.promote(A, "credit-risk", "prod")
        assert (store.route(A, "credit-risk@prod").version.version, store.route(A, "credit-risk@prod").candidate) == (
            2, None)
        other.rollback(A, "credit-risk", "prod")
        assert store.route(A, "credit-risk@prod").version.version == 1
        assert store.route(A, "credit-risk:3").version.version == 3 and store.route(A, "credit-risk:3").alias is None
    finally:
        other.close()


@pytest.mark.parametrize("versions, before", [
    ([], None), ([1], None), ([1, 1, 1], None), ([1, 2], 1), ([1, 2, 2, 2], 1), ([1, 2, 1], 2),
    ([1, None, 3], None), ([1, 2, None], 2), ([1, 2, None, 2], None)])
def test_version_before_last_move(versions, before):
    assert version_before_last_move(versions) == before
