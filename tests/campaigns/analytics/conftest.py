"""Fixtures of the analytics tests."""

from __future__ import annotations

import pytest

from tests.campaigns.analytics.fixtures_analytics import Crafted, count, crafted_stream
from tests.conftest import Tenant


@pytest.fixture
def crafted(tenant: Tenant) -> Crafted:
    """The crafted stream of :func:`crafted_stream`, counted once."""
    data = crafted_stream(tenant)
    count()
    return data
