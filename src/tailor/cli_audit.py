"""The CLI's audit log: ``tailor audit list`` and ``tailor audit verify``, and the recording of the CLI's own state
changes (:func:`run_audited`, which ``tailor.cli.main`` runs every verb through).

The verbs recorded are those of :data:`AUDITED`, with the ids they act on; a verb learns some ids only as it runs
(the new key's id, the tenant of a revoked key, the version a training registered) and adds them with
:func:`note_audit`. A refused or failed verb is recorded too, with its error.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone

from tailor.errors import TailorError, UsageError


def _changes(args) -> bool:
    return True


def _sets_retention(args) -> bool:
    return args.days is not None or args.rows is not None or args.default


def _sets_quota(args) -> bool:
    return args.default or any(getattr(args, name) is not None for name in _QUOTA_ARGS)


def _sets_alerts(args) -> bool:
    return bool(args.rule or args.no_rules or args.webhook or args.store_inputs is not None or args.window_hours
                or args.check)


_QUOTA_ARGS = ("rpm", "key_rpm", "jobs", "storage_mb", "train_minutes")

# (verb, sub-verb) → (the arguments that name its target, when it changes something)
AUDITED = {
    ("train", None): (("file", "name"), _changes),
    ("retrain", None): (("ref", "file", "name"), _changes),
    ("adapt", None): (("corpus", "base", "name"), _changes),
    ("zero-shot", None): (("labels", "labels_file", "name"), _changes),
    ("models", "alias"): (("ref", "alias"), _changes),
    ("models", "delete"): (("ref",), _changes),
    **{("models", verb): (("ref", "version"), _changes) for verb in ("canary", "shadow", "promote", "rollback",
                                                                    "abort")},
    ("keys", "create"): (("name", "scopes"), _changes),
    ("keys", "revoke"): (("key_id",), _changes),
    ("tenants", "create"): (("name",), _changes),
    ("tenants", "delete"): (("name",), _changes),
    ("keys", "rotate-master"): ((), _changes),
    ("tenants", "retention"): (("name", "days", "rows"), _sets_retention),
    ("tenants", "quota"): (("name", *_QUOTA_ARGS), _sets_quota),
    ("tenants", "redact-pii"): (("name", "state"), _changes),
    ("gate", "set"): (("tenant", "min_accuracy", "min_macro_f1", "max_slice_gap", "max_flip_rate",
                       "require_fairness"), _changes),
    ("jobs", "cancel"): (("job_id",), _changes),
    ("eval", None): (("ref", "file", "slice_col"), _changes),  # it stores the version's bias report, which the gate reads
    ("feedback", None): (("file",), _changes),
    ("alerts", None): (("name",), _sets_alerts),
}


def _verb(args) -> tuple[str, str | None]:
    return args.verb, getattr(args, f"{args.verb}_verb", None)


def note_audit(args, *, tenant: str | None = None, **target) -> None:
    """Add what a verb learnt as it ran to its audit row: the tenant it acted for, ids it created or found."""
    args.audit_target = {**getattr(args, "audit_target", {}), **{k: str(v) for k, v in target.items()}}
    if tenant is not None:
        args.audit_tenant = tenant


def _tenant_of(args) -> str | None:
    if getattr(args, "audit_tenant", None):
        return args.audit_tenant
    if args.verb == "tenants":
        return args.name
    return getattr(args, "tenant", None)


def run_audited(args) -> int:
    """Run the verb of ``args``; when it is one of :data:`AUDITED` and changes something, record it (ok, or
    error with the message) in the audit log. A failed audit write is a warning: the verb's work is done."""
    entry = AUDITED.get(_verb(args))
    if entry is None or not entry[1](args):
        return args.func(args)
    try:
        code = args.func(args)
    except BaseException as exc:  # refused, failed or interrupted: recorded with why, then reported as always
        _record(args, entry[0], str(exc) if isinstance(exc, TailorError) else f"{type(exc).__name__}: {exc}")
        raise
    _record(args, entry[0], None if code == 0 else f"exit code {code}")
    return code


def _record(args, target_args: tuple[str, ...], error: str | None) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from tailor.security.audit import record

    target = {name: str(getattr(args, name)) for name in target_args if getattr(args, name, None) is not None}
    target |= getattr(args, "audit_target", {})
    action = " ".join(part for part in _verb(args) if part)
    try:
        record(action, tenant=_tenant_of(args), result="error" if error else "ok", target=target, error=error)
    except SQLAlchemyError as exc:
        print(f"warning: could not write the audit log ({type(exc).__name__}: {exc})", file=sys.stderr)


# ---- tailor audit -----------------------------------------------------------------------------------------
def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A moment from ``2026-11-30``, ``2026-11-30T08:00`` (UTC unless it names a zone) or a span back from now:
    ``90m``, ``24h``, ``7d``.

    Raises:
        UsageError: neither.
    """
    span = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if span:
        seconds = float(span.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[span.group(2)]
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: give a date or time (2026-11-30, 2026-11-30T08:00) or a span back "
                         "from now (90m, 24h, 7d)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _audit_log():
    from tailor.security.audit import AuditLog
    from tailor.settings import get_settings

    return AuditLog(get_settings().registry_url)


def cmd_audit_list(args) -> int:
    from tailor.cli import _show

    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {args.limit})")
    since = parse_since(args.since) if args.since else None
    rows, has_more = _audit_log().list(args.audit_tenant, since=since, action=args.action, after=args.after,
                                       limit=args.limit)
    lines = [f"{r.seq:>6}  {r.at:%Y-%m-%d %H:%M:%S}  {r.tenant or '-':<12} {r.actor:<28} {r.action:<44} "
             f"{_target_text(r.target):<32} {r.client or '-':<15} {r.result}" + (f": {r.error}" if r.error else "")
             for r in rows]
    if has_more:
        lines.append(f"(older rows left out: --after {rows[-1].seq} shows the next page)")
    return _show(args, {"object": "list", "data": [r.to_dict() for r in rows], "has_more": has_more},
                 "\n".join(lines) or "no audit rows")


def _target_text(target: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(target.items())) or "-"


def cmd_audit_verify(args) -> int:
    report = _audit_log().verify()
    if args.json:
        from tailor.cli import _emit_json

        _emit_json(report.to_dict())
        return 0 if report.intact else 1
    if not report.intact:
        raise AuditChainBroken(report.describe())
    print(report.describe())
    return 0


class AuditChainBroken(TailorError):
    """``tailor audit verify`` found a broken link (exit code 1)."""


def add_parsers(verbs, common) -> None:
    """``tailor audit list|verify`` on the CLI's sub-parsers; ``common`` adds ``--json``."""
    audit = verbs.add_parser("audit", help="the audit log: who changed what, when, from where, and the result").\
        add_subparsers(dest="audit_verb", metavar="VERB", required=True)
    ls = audit.add_parser("list", help="audit rows, newest first (every tenant's unless --tenant)")
    ls.add_argument("--tenant", dest="audit_tenant", help="only this tenant's rows")
    ls.add_argument("--since", help="only rows since: a date or time (2026-11-30, 2026-11-30T08:00, UTC) or a span "
                                    "back from now (90m, 24h, 7d)")
    ls.add_argument("--action", help="only this action, e.g. 'POST /v1/files' or 'models alias'")
    ls.add_argument("--after", type=int, metavar="SEQ", help="only rows older than this seq (the next page)")
    ls.add_argument("--limit", type=int, default=50, help="most rows (default 50)")
    common(ls, tenant=False)
    ls.set_defaults(func=cmd_audit_list)
    vf = audit.add_parser("verify", help="check the whole hash chain: exit 0 when intact, 1 naming the first "
                                         "broken row")
    common(vf, tenant=False)
    vf.set_defaults(func=cmd_audit_verify)
