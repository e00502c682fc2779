"""Errors a user can act on.

Everything Tailor raises on purpose derives from :class:`TailorError`; the CLI prints its message on one
line and exits with :attr:`TailorError.exit_code` (2 for bad input or usage), without a traceback.
"""

from __future__ import annotations


class TailorError(Exception):
    """An error whose message is meant for the user."""

    exit_code = 1


class UsageError(TailorError):
    """The command or call was wrong (a bad flag value, a missing argument, an unknown model)."""

    exit_code = 2


class DataError(TailorError):
    """The input data cannot be used. ``line`` and ``field`` locate the problem when known.

    Args:
        message: what is wrong, in words the user understands.
        line: 1-based line number in the source file (the header is line 1 for CSV/TSV).
        field: the column or JSON key concerned.
    """

    exit_code = 2

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        self.line = line
        self.field = field
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message}")


class NotFoundError(UsageError):
    """A referenced model, version or alias does not exist."""


class AuthenticationError(TailorError):
    """A request carried no API key, or one that is unknown or revoked."""


class PermissionDeniedError(TailorError):
    """The API key is valid but lacks the scope the request needs."""


class ConflictError(UsageError):
    """The request is valid but the object's state forbids it (cancelling a finished job)."""


class UnavailableError(TailorError):
    """The server cannot do it right now (its queue is full, or a model's load just failed); retry after
    :attr:`retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceededError(TailorError):
    """A tenant's or key's quota or rate limit refuses the request (the API answers 429); :attr:`limit` names
    it (``rpm``, ``key_rpm``, ``jobs``, ``storage_mb``, ``train_minutes``; see :mod:`tailor.security.quotas`)
    and :attr:`retry_after` is the seconds to wait when waiting helps (None when it does not)."""

    def __init__(self, message: str, *, limit: str, retry_after: int | None = None):
        super().__init__(message)
        self.limit, self.retry_after = limit, retry_after
