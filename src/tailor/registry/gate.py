"""The release gate: a tenant's accuracy floor and bias thresholds that a version must pass before an alias may
serve it.

A tenant's policy (the ``release_gates`` table, one row per tenant; every threshold optional)::

    min_accuracy      0.85   the version's test accuracy (metrics["test"]["accuracy"]) at least this
    min_macro_f1      0.80   its test macro-F1 at least this
    max_slice_gap     0.10   the largest accuracy gap between slices of its latest bias report
                             (metrics["fairness"]["largest_gap"], from tailor eval --slice-col) at most this
    max_flip_rate     0.05   the share of texts whose label changed when protected terms were swapped
                             (metrics["fairness"]["counterfactual"]["flip_rate"], tailor eval --counterfactual)
    require_fairness  true   the version must have a bias report with a slice column

Gated: pointing or moving an alias at a version (``set``), starting a canary (it answers real requests) and
promoting. Not gated: a shadow (it answers nobody; its promotion is gated) and a rollback (the way back to a
version that served before, which must stay open in an incident). A threshold the version has no evidence for
fails with what to run. A refusal names each failing number against its threshold; an admin may override it
with a reason, and the alias history then records that the gate was overridden, the failing numbers and the
reason (:func:`override_reason`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, insert, select

from tailor.db import UtcDateTime, now, open_engine
from tailor.errors import ConflictError, UsageError
from tailor.registry.entities import ModelVersion
from tailor.registry.release import MAX_REASON_CHARS
from tailor.registry.store import RegistryStore

THRESHOLDS = ("min_accuracy", "min_macro_f1", "max_slice_gap", "max_flip_rate")
OVERRIDE_MARK = "release gate overridden"

_metadata = MetaData()
_gates = Table(
    "release_gates", _metadata,
    Column("tenant", String(64), primary_key=True), Column("min_accuracy", Float), Column("min_macro_f1", Float),
    Column("max_slice_gap", Float), Column("max_flip_rate", Float), Column("require_fairness", Integer),
    Column("updated_at", UtcDateTime), Column("updated_by", Text),
)


class GateRefused(ConflictError):
    """The version fails its tenant's release gate; :attr:`failures` lists each failing number in words.
    (A ConflictError: the API answers 409, the CLI exits 2.)"""

    def __init__(self, ref: str, failures: list[str]):
        self.failures = failures
        super().__init__(f"release gate: {ref} fails: {'; '.join(failures)} (an admin may override with a reason)")


@dataclass(frozen=True)
class GatePolicy:
    """A tenant's release gate (see the module docstring); the default checks nothing."""

    min_accuracy: float | None = None
    min_macro_f1: float | None = None
    max_slice_gap: float | None = None
    max_flip_rate: float | None = None
    require_fairness: bool = False

    def __post_init__(self):
        for name in THRESHOLDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise UsageError(f"{name} must be between 0 and 1, got {value:g}")

    @property
    def active(self) -> bool:
        """True when the policy checks anything."""
        return self.require_fairness or any(getattr(self, name) is not None for name in THRESHOLDS)

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(value: float) -> str:
    return f"{value:.2f}" if round(value, 2) == value else f"{value:.4f}"


def _test_failures(policy: GatePolicy, test: dict) -> list[str]:
    failures = []
    for key, name, floor in (("accuracy", "accuracy", policy.min_accuracy),
                             ("macro_f1", "macro-F1", policy.min_macro_f1)):
        if floor is None:
            continue
        value = test.get(key)
        if value is None:
            failures.append(f"no test {name} recorded (< {_fmt(floor)} required); retrain with a test set")
        elif value < floor:
            failures.append(f"test {name} {_fmt(value)} < {_fmt(floor)}")
    return failures


def _fairness_failures(policy: GatePolicy, fairness: dict | None, ref: str) -> list[str]:
    failures = []
    sliced = bool(fairness) and fairness.get("slice_column") is not None
    run = f"run tailor eval {ref} FILE --slice-col COL"
    if (policy.require_fairness or policy.max_slice_gap is not None) and not sliced:
        failures.append(f"no slice report: {run}")
    elif policy.max_slice_gap is not None:
        gap, column = fairness.get("largest_gap"), fairness["slice_column"]
        if gap is None:
            failures.append(f"largest slice gap not judged ({column}: fewer than two slices with "
                            f"{fairness.get('min_rows', 30)} rows or more); {run} on more rows")
        elif gap > policy.max_slice_gap:
            failures.append(f"largest slice gap {_fmt(gap)} > {_fmt(policy.max_slice_gap)} ({column})")
    if policy.max_flip_rate is not None:
        rate = ((fairness or {}).get("counterfactual") or {}).get("flip_rate")
        if rate is None:
            failures.append(f"no counterfactual check: {run} --counterfactual (on texts with protected terms)")
        elif rate > policy.max_flip_rate:
            failures.append(f"flip rate {_fmt(rate)} > {_fmt(policy.max_flip_rate)}")
    return failures


def gate_failures(policy: GatePolicy, version: ModelVersion) -> list[str]:
    """Each way ``version`` fails ``policy``, in words with the number and the threshold
    (``largest slice gap 0.31 > 0.10 (region)``), or what to run where evidence is missing; empty when it passes."""
    return (_test_failures(policy, version.metrics.get("test") or {})
            + _fairness_failures(policy, version.metrics.get("fairness"), version.ref))


def override_reason(failures: list[str], reason: str | None) -> str:
    """The reason an overriding change records in the alias history: the mark, the failing numbers, the reason.

    Args:
        reason: the reason given (not empty: :meth:`GateStore.check` refuses an override without one).
    """
    head = f"{OVERRIDE_MARK} ({'; '.join(failures)}): "
    room = MAX_REASON_CHARS - len(reason.strip())
    if len(head) > room:
        head = head[:max(0, room - 4)] + "...: "
    return head + reason.strip()


class GateStore:
    """Tenants' release gates in the database at ``url``."""

    def __init__(self, url: str):
        self._engine = open_engine(url)

    def get(self, tenant: str) -> GatePolicy:
        """The tenant's policy; the empty policy (checks nothing) when none was set."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_gates).where(_gates.c.tenant == tenant)).one_or_none()
        if row is None:
            return GatePolicy()
        return GatePolicy(**{name: getattr(row, name) for name in THRESHOLDS},
                          require_fairness=bool(row.require_fairness))

    def set(self, tenant: str, policy: GatePolicy, actor: str | None = None) -> GatePolicy:
        """Replace the tenant's policy with ``policy`` (an empty one removes the gate); returns it."""
        with self._engine.begin() as conn:
            conn.execute(delete(_gates).where(_gates.c.tenant == tenant))
            if policy.active:
                conn.execute(insert(_gates).values(tenant=tenant, **{n: getattr(policy, n) for n in THRESHOLDS},
                                                   require_fairness=int(policy.require_fairness),
                                                   updated_at=now(), updated_by=actor))
        return policy

    def check(self, tenant: str, version: ModelVersion, *, override: bool = False,
              reason: str | None = None) -> str | None:
        """Check ``version`` against the tenant's gate before an alias serves it.

        Args:
            override: let a failing version through (the caller has checked the right to); needs ``reason``.
            reason: the change's reason.

        Returns:
            The reason to record with the change: ``reason`` as given when the version passes, or
            :func:`override_reason` when an override let a failing one through.

        Raises:
            GateRefused: the version fails and there is no override.
            UsageError: an override without a reason.
        """
        if override and (reason is None or not reason.strip()):
            raise UsageError("an override of the release gate needs a reason")
        failures = gate_failures(self.get(tenant), version)
        if not failures:
            return reason
        if not override:
            raise GateRefused(version.ref, failures)
        return override_reason(failures, reason)


def check_release(gates: GateStore, store: RegistryStore, tenant: str, name: str, version: int | None, *,
                  alias: str | None = None, override: bool = False, reason: str | None = None) -> str | None:
    """Check the version a release change makes ``name@alias`` serve: ``version``, or (None, a promotion to the
    candidate) the alias's candidate. Returns the reason to record (see :meth:`GateStore.check`).

    Raises:
        GateRefused: the version fails the gate without an override.
        NotFoundError: the version or alias does not exist.
        UsageError: an override without a reason.
    """
    if version is None:
        candidate = store.get_alias(tenant, name, alias).candidate
        if candidate is None:  # nothing to promote: the store says so
            return reason
        version = candidate.version
    return gates.check(tenant, store.get_version(tenant, name, version), override=override, reason=reason)
