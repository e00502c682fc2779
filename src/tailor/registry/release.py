"""The rules of a release through an alias: what a candidate may be, and which version a rollback returns to.

An alias (``credit-risk@prod``) points at one version and may carry a candidate beside it: a ``canary`` answers
a share of the alias's requests, a ``shadow`` predicts on a copy of them without answering. ``promote`` moves
the alias to its candidate; ``rollback`` moves it back to where it pointed before its last move. The store
(:mod:`tailor.registry.sql`) applies these rules in its transactions; serving (:mod:`tailor.serve.release`)
routes requests by them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tailor.errors import ConflictError, UsageError
from tailor.registry.entities import Candidate, ModelVersion

MODES = ("canary", "shadow")
MAX_REASON_CHARS = 1000


def check_candidate(mode: str, share: float | None) -> None:
    """Check a candidate's mode and share before anything is looked up.

    Raises:
        UsageError: an unknown mode, a canary without a share strictly between 0 and 1, or a shadow with one.
    """
    if mode not in MODES:
        raise UsageError(f"unknown release mode {mode!r}; modes are: {', '.join(MODES)}")
    if mode == "shadow":
        if share is not None:
            raise UsageError("share applies to a canary; a shadow sees a copy of every request")
        return
    if share is None:
        raise UsageError("a canary needs a share: the fraction of requests it answers, between 0 and 1")
    if not 0 < share < 1:
        raise UsageError(f"share must be between 0 and 1 (exclusive), got {share:g}")


def check_reason(reason: str | None) -> str | None:
    """Return ``reason`` stripped (``None`` when empty). Raises UsageError when it is too long."""
    if reason is None or not reason.strip():
        return None
    if len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"reason: at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    return reason.strip()


def check_candidate_version(alias_ref: str, current: ModelVersion, candidate: ModelVersion, mode: str) -> None:
    """Check that ``candidate`` may be tried out beside ``current`` (both versions of one model).

    Raises:
        ConflictError: the candidate is the alias's current version.
        UsageError: the candidate is a model of another task, or a shadow that is not a classifier.
    """
    if candidate.version == current.version:
        raise ConflictError(f"{alias_ref} already points at {current.ref}; a candidate must be another version")
    if candidate.task != current.task:
        raise UsageError(f"{candidate.ref} is a {candidate.task} model and {alias_ref} serves a {current.task} "
                         "model; a candidate must do the same task")
    if mode == "shadow" and candidate.task != "classify":
        raise UsageError(f"shadow is for classifiers: {candidate.ref} is a {candidate.task} model; "
                         "try it out with a canary instead")


def same_candidate(candidate: Candidate | None, version: int, mode: str, share: float | None) -> bool:
    """True when ``candidate`` is already exactly this one (setting it again changes nothing)."""
    return candidate == Candidate(version, mode, share)


def version_before_last_move(versions: Iterable[int | None]) -> int | None:
    """The version an alias pointed at before its last move, from the versions its history events left it at,
    oldest first (``None``: removed). Events that kept its version (a canary, a shadow, an abort) are no move.

    Returns:
        That version, or ``None`` when the alias never moved or did not exist before its last move.
    """
    current: int | None = None
    before: int | None = None
    for version in versions:
        if version != current:
            before, current = current, version
    return before
