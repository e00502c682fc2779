"""The CLI's quota verbs under ``tailor tenants``, on this machine's database (as the server sees it):

- ``tailor tenants quota NAME``: the tenant's limits (its own or the server's defaults) and its use now;
  ``--rpm``, ``--key-rpm``, ``--jobs``, ``--storage-mb``, ``--train-minutes`` set its own (0: unlimited),
  ``--default`` first returns them all to the server's defaults;
- ``tailor tenants redact-pii NAME on|off``: replace personal data by placeholders in the tenant's training
  data and stored inputs.

A running server reads a changed quota within 10 seconds (:class:`tailor.security.quotas.CachedQuotas`).
"""

from __future__ import annotations


def _stores():
    from tailor.data.files import FileStore
    from tailor.jobs.store import JobStore
    from tailor.security.keys import TenantStore
    from tailor.security.quotas import QuotaStore
    from tailor.settings import get_settings

    settings = get_settings()
    url = settings.registry_url
    return settings, TenantStore(url), QuotaStore(url), FileStore(url, settings.files_dir), JobStore(url)


def cmd_tenants_quota(args) -> int:
    from tailor.cli import _show
    from tailor.security.quotas import LIMIT_NAMES, LIMITS, effective_quota
    from tailor.serve.limits import quota_usage

    settings, tenants, quotas, files, jobs = _stores()
    tenants.require_tenant(args.name)
    changes = {name: None for name in LIMITS} if args.default else {}
    changes.update({name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None})
    if changes:
        quotas.set(args.name, **changes)
    own = quotas.get(args.name)
    quota = effective_quota(own, settings)
    report = quota_usage(quota, args.name, files, jobs)
    shown = {"tenant": args.name, **report, "own": {name: getattr(own, name) for name in LIMITS}}
    lines = [f"tenant {args.name}" + (" (personal data redacted)" if quota.redact_pii else "")]
    for name in LIMITS:
        limit = report["limits"][name] or "unlimited"
        used = report["usage"][name]
        source = "" if getattr(own, name) is not None else "  (server default)"
        lines.append(f"  {name:<14}{str(limit):>10}  {LIMIT_NAMES[name]}"
                     + (f"; used {used}" if used is not None else "; counted by the server") + source)
    return _show(args, shown, "\n".join(lines))


def cmd_tenants_redact_pii(args) -> int:
    from tailor.cli import _show

    _, tenants, quotas, _, _ = _stores()
    tenants.require_tenant(args.name)
    on = args.state == "on"
    quotas.set(args.name, redact_pii=on)
    return _show(args, {"tenant": args.name, "redact_pii": on},
                 f"tenant {args.name}: personal data (e-mails, phones, card, ID and IBAN numbers) is "
                 + ("replaced by placeholders before training and before inputs are stored" if on
                    else "kept as given"))


def add_parsers(tenants, common) -> None:
    """The quota verbs on ``tailor tenants``' sub-parsers; ``common`` adds ``--json``."""
    qu = tenants.add_parser("quota", help="a tenant's quotas and rate limits with its use now (shows them; the "
                                          "flags set them; 0 is unlimited)")
    qu.add_argument("name")
    for flag, dest, help_text in (
            ("--rpm", "rpm", "requests per minute of the whole tenant"),
            ("--key-rpm", "key_rpm", "requests per minute of each of its API keys"),
            ("--jobs", "jobs", "fine-tuning jobs queued or running at once (more are refused with 429)"),
            ("--storage-mb", "storage_mb", "MiB of uploaded files it may keep"),
            ("--train-minutes", "train_minutes", "minutes of job run time per UTC day")):
        qu.add_argument(flag, dest=dest, type=int, metavar="N", help=help_text)
    qu.add_argument("--default", action="store_true", help="back to the server's defaults (TAILOR_RATE_LIMIT_RPM, "
                                                           "TAILOR_TENANT_MAX_JOBS, ...) before the other flags")
    common(qu, tenant=False)
    qu.set_defaults(func=cmd_tenants_quota)

    rp = tenants.add_parser("redact-pii", help="replace personal data by placeholders ([EMAIL], [PHONE], [CARD], "
                                               "[ID], [IBAN]) in the tenant's training data and stored inputs")
    rp.add_argument("name")
    rp.add_argument("state", choices=["on", "off"])
    common(rp, tenant=False)
    rp.set_defaults(func=cmd_tenants_redact_pii)
