"""Reputation fixtures: thresholds read fresh in every test, and provider events in SES's format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deliverability.reputation.models import forget_thresholds

# The browser fixtures, for test_browser.py.
from tests.browser.conftest import browser, page, playwright_instance, shot  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_thresholds() -> Iterator[None]:
    """The process caches the thresholds for a minute; each test reads its own."""
    forget_thresholds()
    yield
    forget_thresholds()
