"""Model references (``name``, ``name:3``, ``name@production``, ``name@latest``) and the naming rules.

A plain name is 1-64 lowercase letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit.
Fine-tuned model ids in OpenAI's shape (``ft:minilm-l6:acme:suffix:ftjob-abc123``) are names too: a name
may contain ``:`` only when it starts with ``ft:``, and its last part must not be all digits, so that a
trailing ``:<digits>`` always means a version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tailor.errors import UsageError

LATEST = "latest"
MAX_NAME_LENGTH = 200

_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_FT_NAME = re.compile(r"ft(:[a-z0-9._-]*)*:[a-z0-9._-]*[a-z._-][a-z0-9._-]*")
_VERSIONED = re.compile(r"(.+):([1-9][0-9]*)")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference. ``version`` and ``alias`` are both ``None`` for the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None


def _is_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(_PLAIN_NAME.fullmatch(name) or _FT_NAME.fullmatch(name))


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name:VERSION``, ``name@ALIAS`` or ``name@latest``.

    Raises:
        UsageError: the reference has none of these forms.
    """
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if _is_name(name) and _ALIAS.fullmatch(alias):
            return ModelRef(name, alias=None if alias == LATEST else alias)
    else:
        versioned = _VERSIONED.fullmatch(ref)
        if versioned and _is_name(versioned[1]):
            return ModelRef(versioned[1], version=int(versioned[2]))
        if _is_name(ref):
            return ModelRef(ref)
    raise UsageError(
        f"invalid model reference {ref!r}: expected NAME, NAME:VERSION or NAME@ALIAS "
        "(e.g. credit-risk, credit-risk:3, credit-risk@production, credit-risk@latest)"
    )


def validate_name(name: str) -> str:
    """Return ``name`` if a model may be created under it.

    Raises:
        UsageError: the name breaks the naming rule.
    """
    if not _is_name(name):
        raise UsageError(
            f"invalid model name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it may be set or deleted.

    Raises:
        UsageError: the alias is ``latest`` (reserved) or breaks the alias rule.
    """
    if alias == LATEST:
        raise UsageError("alias 'latest' is reserved: it always means the highest version")
    if not _ALIAS.fullmatch(alias):
        raise UsageError(
            f"invalid alias {alias!r}: use 1-32 lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return alias


def validate_tenant(tenant: str) -> str:
    """Return ``tenant`` if it is safe as a directory name.

    Raises:
        UsageError: the tenant id is empty, too long, or has characters other than letters, digits, . _ -.
    """
    if not _TENANT.fullmatch(tenant):
        raise UsageError(f"invalid tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return tenant
