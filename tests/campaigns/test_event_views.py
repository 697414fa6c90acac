"""Events where people read them: the message API shows each event's type, detail, machine flag and
clicked URL (never another organisation's link); the back office lists and searches events."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import User
from campaigns.events import record_event
from campaigns.models import MessageEvent, TrackedLink, url_hash
from tests.campaigns.fixtures_api import (  # noqa: F401 - fixtures
    Api,
    api_fixture,
    make_message,
)
from tests.conftest import Tenant
from tests.factories import OrganisationFactory

pytestmark = pytest.mark.django_db


def test_the_api_shows_subtype_machine_flag_and_clicked_url(api: Api, django_assert_max_num_queries: Any) -> None:
    message = make_message(api)
    url = "https://shop.example/spring"
    tracked = TrackedLink.objects.create(organisation=api.account.organisation, url=url, url_hash=url_hash(url))
    record_event(message, MessageEvent.Type.BOUNCE, subtype="transient")
    record_event(message, MessageEvent.Type.OPEN, machine=True, data={"machine": "apple_mpp"})
    record_event(message, MessageEvent.Type.CLICK, link_id=tracked.pk)

    with django_assert_max_num_queries(5):
        body = api.get(message.pk).json()

    assert [(e["type"], e["subtype"], e["machine"], e["link"]) for e in body["events"]] == [
        ("bounce", "transient", False, None),
        ("open", "", True, None),
        ("click", "", False, url),
    ]
    assert body["events"][1]["data"] == {"machine": "apple_mpp"}


def test_the_api_never_shows_another_organisations_link(api: Api) -> None:
    message = make_message(api)
    theirs = TrackedLink.objects.create(
        organisation=OrganisationFactory(), url="https://theirs.example/", url_hash=url_hash("https://theirs.example/")
    )
    record_event(message, MessageEvent.Type.CLICK, link_id=theirs.pk)

    assert api.get(message.pk).json()["events"][0]["link"] is None


def test_events_are_scoped_to_the_tenant(api: Api, tenant: Tenant) -> None:
    message = make_message(api)
    record_event(message, MessageEvent.Type.DELIVERY)

    outsider_org = OrganisationFactory()
    assert MessageEvent.objects.for_organisation(outsider_org).count() == 0
    assert MessageEvent.objects.for_organisation(api.account.organisation).count() == 1


# --- back office ----------------------------------------------------------------------------------


EVENTS = reverse("admin:campaigns_messageevent_changelist")
LINKS = reverse("admin:campaigns_trackedlink_changelist")


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


def test_the_team_lists_filters_and_searches_events(api: Api, back_office: HttpClient) -> None:
    first, second = make_message(api), make_message(api, to_email="bob@example.com")
    record_event(first, MessageEvent.Type.DELIVERY)
    record_event(second, MessageEvent.Type.OPEN, machine=True)

    listed = back_office.get(EVENTS)
    by_message = back_office.get(EVENTS, {"q": str(second.pk)})
    machines = back_office.get(EVENTS, {"machine__exact": "1"})
    nonsense = back_office.get(EVENTS, {"q": "bob@example.com"})

    assert listed.status_code == 200
    assert [e.message_id for e in listed.context["cl"].result_list] == [second.pk, first.pk]
    assert [e.message_id for e in by_message.context["cl"].result_list] == [second.pk]
    assert [e.message_id for e in machines.context["cl"].result_list] == [second.pk]
    assert list(nonsense.context["cl"].result_list) == []
    event = MessageEvent.objects.get(message=first)
    detail = back_office.get(reverse("admin:campaigns_messageevent_change", args=[event.pk]))
    assert detail.status_code == 200
    assert back_office.post(reverse("admin:campaigns_messageevent_change", args=[event.pk]), {}).status_code == 403


def test_tracked_links_are_read_only_in_the_back_office(api: Api, back_office: HttpClient) -> None:
    url = "https://shop.example/a"
    tracked = TrackedLink.objects.create(organisation=api.account.organisation, url=url, url_hash=url_hash(url))

    assert back_office.get(LINKS).status_code == 200
    response = back_office.post(
        reverse("admin:campaigns_trackedlink_change", args=[tracked.pk]), {"url": "https://evil.example/"}
    )
    assert response.status_code == 403
    tracked.refresh_from_db()
    assert tracked.url == url


def test_customers_do_not_reach_the_event_admin(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).get(EVENTS)

    assert response.status_code == 302
