"""Property-based tests of the OpenAPI spec with schemathesis: for generated valid and invalid requests to
every operation, the API never answers 5xx, answers only documented statuses and content types, and every
body matches its documented schema.

Schemathesis loads the schema when the module is collected, so this module builds its own app over a
temporary storage root (SQLite) with one tenant.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tailor.security.keys import TenantStore
from tailor.serve.app import create_app
from tailor.settings import Settings

_home = Path(tempfile.mkdtemp(prefix="tailor-openapi-"))
atexit.register(shutil.rmtree, _home, ignore_errors=True)
_settings = Settings(home=_home)
_, KEY = TenantStore(_settings.registry_url).create_tenant("acme")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_settings))


@schema.parametrize()
# derandomize: the same cases every run, so CI never meets a case it did not meet before.
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
def test_every_operation_conforms_to_the_spec(case):
    # A schema-valid request may still name a model or file that does not exist; OpenAI answers those
    # with 400 (unknown model for fine-tuning, missing training file), so "valid data is accepted" is off.
    excluded = [positive_data_acceptance]
    if case.method.upper() == "GET":
        # A GET's inputs are path and query strings, where schemathesis's "invalid" values are often valid:
        # a boolean or an array "mutated" into a string parameter arrives as the valid string "true" or "0.0"
        # (schemathesis issues #2312, #3962). Bodies, where types survive, are still checked for rejection.
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=excluded)
