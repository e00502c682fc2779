"""Fixtures of the encryption tests."""

from __future__ import annotations

import pytest

from api_helpers import new_master_key


@pytest.fixture
def master_key() -> str:
    """A fresh master key (URL-safe base64 text, as TAILOR_MASTER_KEY takes it)."""
    return new_master_key()
