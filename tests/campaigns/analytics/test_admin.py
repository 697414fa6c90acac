"""The back office's analytics page and its rebuild action, and ``manage.py rebuild_analytics``."""

from __future__ import annotations

from io import StringIO
from typing import Any

import django_rq
from django.core.management import call_command
from django.urls import reverse
from rq import SimpleWorker

from accounts.models import User
from campaigns.analytics.models import AggregationState, CampaignHour
from tests.campaigns.analytics.fixtures_analytics import Crafted


def test_the_team_rebuilds_the_counters_from_the_admin(
    staff_user: User, client: Any, crafted: Crafted, django_capture_on_commit_callbacks: Any
) -> None:
    CampaignHour.objects.update(sent=0)  # counters gone wrong
    client.force_login(staff_user)
    url = reverse("admin:analytics_aggregationstate_changelist")
    assert client.get(url).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "rebuild", "_selected_action": [AggregationState.objects.get().pk]})

    assert response.status_code == 302
    queue = django_rq.get_queue("default")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert sum(CampaignHour.objects.filter(campaign=crafted.campaign).values_list("sent", flat=True)) == 7
    assert AggregationState.objects.get().rebuilt_at is not None


def test_the_command_rebuilds_the_counters(crafted: Crafted) -> None:
    CampaignHour.objects.all().delete()
    out = StringIO()

    call_command("rebuild_analytics", stdout=out)

    assert "Counted events up to id" in out.getvalue()
    assert sum(CampaignHour.objects.filter(campaign=crafted.campaign).values_list("delivered", flat=True)) == 4


def test_customers_cannot_reach_the_admin(client: Any, crafted: Crafted, tenant: Any) -> None:
    client.force_login(tenant.owner)

    response = client.get(reverse("admin:analytics_aggregationstate_changelist"))

    assert response.status_code == 302
