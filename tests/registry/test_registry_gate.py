"""The release gate on each database backend: a tenant's policy, the failing numbers in words, missing evidence
with what to run, an override recorded in the alias history, and tenants kept apart."""

import pytest

from tailor.errors import UsageError
from tailor.registry.gate import GatePolicy, GateRefused, GateStore, check_release, gate_failures

A, B = "acme", "globex"
FAIRNESS = {"slice_column": "region", "largest_gap": 0.31, "min_rows": 30,
            "counterfactual": {"checked": 50, "flipped": 4, "flip_rate": 0.08}}
POLICY = GatePolicy(min_macro_f1=0.8, max_slice_gap=0.1, max_flip_rate=0.05)


@pytest.fixture
def gates(db_url, store):  # the store fixture migrates the database first
    return GateStore(db_url)


def add(store, tenant=A, test=None, fairness=None):
    metrics = {"test": test or {"accuracy": 0.9, "macro_f1": 0.85}} | ({"fairness": fairness} if fairness else {})
    return store.create_version(tenant, "loans", task="classify", base_model="minilm-l6", method="head",
                                artifact_path=f"{tenant}/loans/x", params={}, metrics=metrics, lineage={})


def test_policies_are_per_tenant_and_an_empty_one_removes_the_gate(gates):
    assert gates.get(A) == GatePolicy() and not GatePolicy().active
    assert gates.set(A, POLICY, actor="cli:ana") == POLICY
    assert gates.get(A) == POLICY and gates.get(B) == GatePolicy()
    gates.set(A, GatePolicy(require_fairness=True))
    assert gates.get(A) == GatePolicy(require_fairness=True)
    gates.set(A, GatePolicy())
    assert gates.get(A) == GatePolicy()


def test_a_threshold_outside_0_1_is_refused():
    with pytest.raises(UsageError, match="^max_slice_gap must be between 0 and 1, got 1.5$"):
        GatePolicy(max_slice_gap=1.5)


def test_failures_name_each_number_against_its_threshold(store):
    version = add(store, test={"accuracy": 0.9, "macro_f1": 0.7512}, fairness=FAIRNESS)
    assert gate_failures(POLICY, version) == ["test macro-F1 0.7512 < 0.80",
                                              "largest slice gap 0.31 > 0.10 (region)", "flip rate 0.08 > 0.05"]
    assert gate_failures(GatePolicy(min_accuracy=0.9, max_slice_gap=0.31, max_flip_rate=0.08), version) == []


def test_missing_evidence_says_what_to_run(store):
    version = add(store)
    assert gate_failures(POLICY, version) == [
        "no slice report: run tailor eval loans:1 FILE --slice-col COL",
        "no counterfactual check: run tailor eval loans:1 FILE --slice-col COL --counterfactual "
        "(on texts with protected terms)"]
    unjudged = add(store, fairness={"slice_column": "region", "largest_gap": None, "min_rows": 30,
                                    "counterfactual": None})
    assert gate_failures(GatePolicy(max_slice_gap=0.1), unjudged) == [
        "largest slice gap not judged (region: fewer than two slices with 30 rows or more); "
        "run tailor eval loans:2 FILE --slice-col COL on more rows"]
    finder_only = add(store, fairness={"slice_column": None, "largest_gap": None, "counterfactual": None})
    assert gate_failures(GatePolicy(require_fairness=True), finder_only) == [
        "no slice report: run tailor eval loans:3 FILE --slice-col COL"]
    chat = add(store, test={"loss": 1.2})
    assert gate_failures(GatePolicy(min_accuracy=0.8), chat) == [
        "no test accuracy recorded (< 0.80 required); retrain with a test set"]


def test_refused_then_allowed_after_a_fix(store, gates):
    add(store, fairness=FAIRNESS)
    gates.set(A, POLICY)
    with pytest.raises(GateRefused) as refused:
        check_release(gates, store, A, "loans", 1, reason="ship it")
    assert str(refused.value) == ("release gate: loans:1 fails: largest slice gap 0.31 > 0.10 (region); "
                                  "flip rate 0.08 > 0.05 (an admin may override with a reason)")
    assert store.get_model(A, "loans").aliases == {}
    store.update_metrics(A, "loans", 1, {"fairness": FAIRNESS | {"largest_gap": 0.04,
                                                                 "counterfactual": {"flip_rate": 0.02}}})
    assert check_release(gates, store, A, "loans", 1, reason="ship it") == "ship it"


def test_an_override_needs_a_reason_and_is_recorded_with_the_numbers(store, gates):
    add(store)
    add(store, fairness=FAIRNESS)
    store.set_alias(A, "loans", "prod", 1)
    store.set_candidate(A, "loans", "prod", 2, "shadow")  # a shadow answers nobody: not gated
    gates.set(A, GatePolicy(max_slice_gap=0.1))
    with pytest.raises(UsageError, match="^an override of the release gate needs a reason$"):
        check_release(gates, store, A, "loans", None, alias="prod", override=True, reason=" ")
    with pytest.raises(GateRefused, match=r"loans:2 fails: largest slice gap 0.31 > 0.10 \(region\)"):
        check_release(gates, store, A, "loans", None, alias="prod")  # promoting the candidate checks it
    reason = check_release(gates, store, A, "loans", None, alias="prod", override=True, reason="board approved")
    assert reason == "release gate overridden (largest slice gap 0.31 > 0.10 (region)): board approved"
    store.promote(A, "loans", "prod", actor="cli:root", reason=reason)
    last = store.alias_history(A, "loans")[-1]
    assert (last.action, last.version, last.actor, last.reason) == ("promote", 2, "cli:root", reason)


def test_tenants_are_isolated(store, gates):
    add(store, A, fairness=FAIRNESS)
    add(store, B, fairness=FAIRNESS)
    gates.set(A, POLICY)
    assert check_release(gates, store, B, "loans", 1) is None  # globex set no gate
    with pytest.raises(GateRefused):
        check_release(gates, store, A, "loans", 1)
