from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plans import services
from plans.models import Plan


@pytest.fixture
def standard(db):
    return Plan.objects.get(code="STANDARD")


def test_reserve_consume_release_roundtrip(tenant, standard):
    at = datetime(2026, 3, 1, tzinfo=UTC)
    term = services.grant_plan(tenant.organisation, standard, origin="xes_team", at=at)
    r = services.reserve(tenant.organisation, 1000, sending_account=tenant.account_a, at=at)
    services.consume(r, 600, at=at)
    services.release(r, at=at)
    term.refresh_from_db()
    assert (term.available, term.reserved, term.used) == (999_400, 0, 600)
    assert services.rebuild_balances(tenant.organisation) == []
