"""The XES team's admin: rules, firings, endpoints (never their secrets), deliveries read-only with a
"retry now" action."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from accounts.models import User
from campaigns.automation import triggers
from campaigns.automation.models import Firing, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.campaigns.automation.conftest import World, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(world: World) -> dict[str, Any]:
    rule = make_rule(world)
    firing = triggers.fire(rule, world.messages[0].to_email)
    endpoint = WebhookEndpoint.objects.create(organisation=world.organisation, url="https://hooks.example/in")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, payload='{"events":[]}', status="failed", attempts=6)
    WebhookAttempt.objects.create(delivery=delivery, number=6, status_code=503, error="The endpoint answered 503.")
    return {"rule": rule, "firing": firing, "endpoint": endpoint, "delivery": delivery}


def test_every_page_opens_for_the_team(client: Any, staff_user: User, data: dict[str, Any]) -> None:
    client.force_login(staff_user)
    for name, obj in [
        ("triggerrule", data["rule"]),
        ("firing", data["firing"]),
        ("webhookendpoint", data["endpoint"]),
        ("webhookdelivery", data["delivery"]),
    ]:
        assert client.get(reverse(f"admin:automation_{name}_changelist")).status_code == 200, name
        page = client.get(reverse(f"admin:automation_{name}_change", args=[obj.pk]))
        assert page.status_code == 200, name
    endpoint_page = client.get(reverse("admin:automation_webhookendpoint_change", args=[data["endpoint"].pk]))
    assert data["endpoint"].secret not in endpoint_page.content.decode()
    delivery_page = client.get(reverse("admin:automation_webhookdelivery_change", args=[data["delivery"].pk]))
    assert "The endpoint answered 503." in delivery_page.content.decode()


def test_logs_are_read_only(client: Any, staff_user: User, data: dict[str, Any]) -> None:
    client.force_login(staff_user)
    assert client.get(reverse("admin:automation_firing_add")).status_code == 403
    assert client.get(reverse("admin:automation_webhookdelivery_add")).status_code == 403
    client.post(reverse("admin:automation_firing_change", args=[data["firing"].pk]), {"email": "x@example.net"})
    assert Firing.objects.get().email == data["firing"].email


def test_retry_action_makes_a_given_up_delivery_due(
    client: Any, staff_user: User, data: dict[str, Any], django_capture_on_commit_callbacks
) -> None:
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("admin:automation_webhookdelivery_changelist"),
            {"action": "retry", "_selected_action": [data["delivery"].pk]},
        )
    assert response.status_code == 302
    assert callbacks
    data["delivery"].refresh_from_db()
    assert data["delivery"].status == WebhookDelivery.Status.RETRYING


def test_the_team_can_switch_rules_off(client: Any, staff_user: User, data: dict[str, Any]) -> None:
    client.force_login(staff_user)
    client.post(
        reverse("admin:automation_triggerrule_changelist"),
        {"action": "switch_off", "_selected_action": [data["rule"].pk]},
    )
    data["rule"].refresh_from_db()
    assert data["rule"].enabled is False
