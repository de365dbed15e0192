"""Fixtures for the reliability suite.

The API scenarios (9-12) reuse the API tests' running-server fixtures: uvicorn on
127.0.0.1, a random port, the test's own migrated database (tests/integration/api/conftest.py).
"""

from __future__ import annotations

from tests.integration.api.conftest import api, client, other_user, start_api  # noqa: F401
from tests.integration.api.test_auth import jwks_keys  # noqa: F401 - a JWKS server (EC + RSA)
