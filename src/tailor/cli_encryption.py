"""The CLI's encryption-at-rest verbs (see :mod:`tailor.security.crypto`) on this machine's database:

- ``tailor keys new-master --out FILE``: write a fresh master key to a file only its owner can read;
- ``tailor keys rotate-master --new-key-file FILE`` (or ``TAILOR_NEW_MASTER_KEY``): re-wrap every tenant's data
  key under the new master key in one transaction; the data is not touched;
- ``tailor tenants delete NAME``: destroy the tenant's data key and remove everything it owns
  (:func:`tailor.jobs.erase.delete_tenant`), printing what went.
"""

from __future__ import annotations

import os
from pathlib import Path

from tailor.errors import UsageError

NEW_KEY_ENV = "TAILOR_NEW_MASTER_KEY"


def cmd_keys_new_master(args) -> int:
    import base64
    import secrets

    from tailor.cli import _show

    out = Path(args.out)
    if out.exists():
        raise UsageError(f"{out} exists; a master key file is never overwritten (losing the old key loses the data)")
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    from tailor.security.crypto import parse_master_key

    fingerprint = parse_master_key(key, str(out)).fingerprint
    return _show(args, {"file": str(out), "fingerprint": fingerprint},
                 f"master key written to {out} (mode 0600, fingerprint {fingerprint})\n"
                 f"turn encryption on with: export TAILOR_MASTER_KEY_FILE={out.resolve()}\n"
                 "keep a copy somewhere safe: without it, the encrypted data cannot be read")


def cmd_keys_rotate_master(args) -> int:
    from tailor.cli import _show
    from tailor.cli_audit import note_audit
    from tailor.security.crypto import load_master_key, master_key_from_file, parse_master_key, rotate_master
    from tailor.settings import get_settings

    settings = get_settings()
    old = load_master_key(settings)
    if old is None:
        raise UsageError("no current master key: set TAILOR_MASTER_KEY or TAILOR_MASTER_KEY_FILE to the key the data "
                         "keys are wrapped with (to start encrypting, just set one)")
    if args.new_key_file:
        new = master_key_from_file(Path(args.new_key_file), "--new-key-file")
    elif os.environ.get(NEW_KEY_ENV):
        new = parse_master_key(os.environ[NEW_KEY_ENV], NEW_KEY_ENV)
    else:
        raise UsageError(f"give the new master key: --new-key-file FILE (see tailor keys new-master) or {NEW_KEY_ENV}")
    if new.fingerprint == old.fingerprint:
        raise UsageError("the new master key is the current one; nothing to rotate")
    tenants = rotate_master(settings.registry_url, old, new)
    note_audit(args, old_fingerprint=old.fingerprint, new_fingerprint=new.fingerprint, tenants=len(tenants))
    return _show(args, {"tenants": tenants, "old_fingerprint": old.fingerprint, "new_fingerprint": new.fingerprint},
                 f"re-wrapped the data keys of {len(tenants)} tenant(s) under the master key {new.fingerprint}"
                 f"{': ' + ', '.join(tenants) if tenants else ''}\n"
                 "from now on start Tailor with the new key (TAILOR_MASTER_KEY or TAILOR_MASTER_KEY_FILE); the old one "
                 "no longer opens anything")


def cmd_tenants_delete(args) -> int:
    from tailor.cli import _show
    from tailor.jobs.erase import delete_tenant
    from tailor.security.keys import TenantStore
    from tailor.settings import get_settings

    settings = get_settings()
    TenantStore(settings.registry_url).require_tenant(args.name)
    if not args.yes:
        answer = input(f"delete tenant {args.name!r} and everything it owns, for good? type its name to confirm: ")
        if answer.strip() != args.name:
            raise UsageError("not confirmed; nothing was deleted")
    erased = delete_tenant(settings, args.name)
    rows = ", ".join(f"{table} {n}" for table, n in sorted(erased.rows.items())) or "none"
    text = (f"tenant {args.name} deleted\n"
            f"data key destroyed: {'yes' if erased.data_keys else 'none (not encrypted)'}\n"
            f"files: {len(erased.files)}{' (' + ', '.join(erased.files) + ')' if erased.files else ''}\n"
            f"model versions: {len(erased.models)}{' (' + ', '.join(erased.models) + ')' if erased.models else ''}\n"
            f"jobs: {len(erased.jobs)}\n"
            f"database rows: {rows}\n"
            f"folders removed: {len(erased.paths)}")
    return _show(args, erased.to_dict(), text)


def add_parsers(tenants, keys, common) -> None:
    """Register ``tenants delete``, ``keys new-master`` and ``keys rotate-master``."""
    td = tenants.add_parser("delete", help="destroy a tenant's data key and remove all it owns (files, models, jobs, "
                                           "records, keys), for good")
    td.add_argument("name")
    td.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    common(td, tenant=False)
    td.set_defaults(func=cmd_tenants_delete)
    kn = keys.add_parser("new-master", help="write a fresh master key (32 random bytes, URL-safe base64) to a file")
    kn.add_argument("--out", required=True, metavar="FILE", help="the key file to create (mode 0600)")
    common(kn, tenant=False)
    kn.set_defaults(func=cmd_keys_new_master)
    kr = keys.add_parser("rotate-master", help="re-wrap every tenant's data key under a new master key (the current "
                                               "one from TAILOR_MASTER_KEY / TAILOR_MASTER_KEY_FILE)")
    kr.add_argument("--new-key-file", metavar="FILE", help=f"the new master key (or set {NEW_KEY_ENV})")
    common(kr, tenant=False)
    kr.set_defaults(func=cmd_keys_rotate_master)
