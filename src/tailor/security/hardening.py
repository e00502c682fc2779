"""What the service refuses to start with outside development (``TAILOR_ENVIRONMENT=production``).

Development (the default) starts with anything, so a laptop needs no setup. In production ``tailor serve`` and
:func:`tailor.serve.app.create_app` refuse, naming every problem at once:

- no master key (``TAILOR_MASTER_KEY`` or ``TAILOR_MASTER_KEY_FILE``): data at rest would be readable;
- the server bound beyond localhost (``tailor serve --host``) without TLS (``--ssl-certfile`` and
  ``--ssl-keyfile``) or a reverse proxy in front (``TAILOR_FORWARDED_ALLOW_IPS``): keys would cross the network in
  clear;
- CORS open to every origin (``*`` in ``TAILOR_CORS_ORIGINS``): any web page could call the API with a user's key.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from tailor.errors import UsageError
from tailor.settings import Settings


class InsecureSettingsError(UsageError):
    """Production settings that would leave data or keys exposed; the message lists every problem."""


def is_local_host(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_problems(settings: Settings, *, host: str | None = None, tls: bool = False) -> list[str]:
    """Every reason ``settings`` (serving on ``host``, with TLS or not) are unsafe for production.

    Args:
        host: the address the server binds to; None when not known (an app built without ``tailor serve``).
        tls: whether the server itself speaks HTTPS.

    Returns:
        The problems in words, in a fixed order; empty when none (always empty in development).
    """
    if settings.environment == "development":
        return []
    problems = []
    if settings.master_key is None and settings.master_key_file is None:
        problems.append("no master key (set TAILOR_MASTER_KEY or TAILOR_MASTER_KEY_FILE)")
    elif settings.master_key is None and not settings.master_key_file.is_file():
        problems.append(f"the master key file {settings.master_key_file} does not exist (TAILOR_MASTER_KEY_FILE)")
    if host is not None and not is_local_host(host) and not tls and not settings.forwarded_allow_ips:
        problems.append(f"bound to {host} beyond localhost without TLS (give --ssl-certfile and --ssl-keyfile) "
                        "or a proxy in front (set TAILOR_FORWARDED_ALLOW_IPS to its address)")
    if "*" in settings.cors_origins:
        problems.append("CORS is open to every origin (TAILOR_CORS_ORIGINS has '*'; list the origins allowed)")
    return problems


def require_safe_settings(settings: Settings, *, host: str | None = None, tls: bool = False) -> None:
    """Refuse to serve with unsafe production settings (see :func:`settings_problems`).

    Raises:
        InsecureSettingsError: one line naming every problem.
    """
    problems = settings_problems(settings, host=host, tls=tls)
    if problems:
        raise InsecureSettingsError(f"refusing to start with TAILOR_ENVIRONMENT={settings.environment}: "
                                    + "; ".join(problems))


def settings_from_environment() -> Settings:
    """The settings from ``TAILOR_*`` variables, with a bad value reported in one line.

    Raises:
        UsageError: a variable's value is invalid (named, with why).
    """
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = [f"TAILOR_{str(e['loc'][0]).upper()}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()]
        raise UsageError("invalid setting " + "; ".join(problems)) from None


def tls_files(certfile: str | None, keyfile: str | None) -> tuple[str, str] | None:
    """The certificate and key ``tailor serve`` speaks HTTPS with, or None for plain HTTP.

    Raises:
        UsageError: one given without the other, or a file that does not exist.
    """
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise UsageError("give both --ssl-certfile and --ssl-keyfile for TLS, or neither")
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    return certfile, keyfile
