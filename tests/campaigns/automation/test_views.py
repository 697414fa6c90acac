"""Trigger rule and webhook pages: forms with clear errors, tenancy (outsiders get 404, client users
see only their client's), roles (403), the secret shown once and revealed to owners only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import SenderAddress, User
from campaigns.automation.models import Firing, TriggerRule, WebhookDelivery, WebhookEndpoint
from campaigns.models import Campaign, ContactList, Template
from tests.campaigns.automation.conftest import CAMPAIGN_BODY, FOLLOW_UP_BODY, OFFER, OTHER
from tests.conftest import Tenant
from tests.factories import VerifiedSenderFactory

pytestmark = pytest.mark.django_db


@dataclass
class Setup:
    campaign_a: Campaign
    campaign_b: Campaign
    follow_up: Template
    sender_a: SenderAddress
    sender_b: SenderAddress


def _campaign(tenant: Tenant, account: Any, sender: SenderAddress, name: str, **fields: Any) -> Campaign:
    template = Template.objects.create(
        organisation=tenant.organisation,
        client=account.client,
        name=f"{name} mail",
        slug=name.lower(),
        subject="Hi",
        body=fields.pop("body", CAMPAIGN_BODY),
    )
    contacts = ContactList.objects.create(organisation=tenant.organisation, client=account.client, name=name)
    return Campaign.objects.create(
        organisation=tenant.organisation,
        sending_account=account,
        sender=sender,
        template=template,
        name=name,
        contact_list=contacts,
        **fields,
    )


@pytest.fixture
def setup(tenant: Tenant) -> Setup:
    sender_a = VerifiedSenderFactory(sending_account=tenant.account_a, email="hello@alpha.example")
    sender_b = VerifiedSenderFactory(sending_account=tenant.account_b, email="hello@beta.example")
    follow_up = Template.objects.create(
        organisation=tenant.organisation, client=tenant.client_a, name="Brochure", slug="brochure", subject="Hi",
        body=FOLLOW_UP_BODY,
    )  # fmt: skip
    return Setup(
        campaign_a=_campaign(tenant, tenant.account_a, sender_a, "Spring"),
        campaign_b=_campaign(tenant, tenant.account_b, sender_b, "Beta"),
        follow_up=follow_up,
        sender_a=sender_a,
        sender_b=sender_b,
    )


def rule_data(setup: Setup, **changes: Any) -> dict[str, Any]:
    data = {
        "name": "Offer clicked",
        "campaign": setup.campaign_a.pk,
        "event": "click",
        "link": OFFER,
        "link_other": "",
        "delay_days": "",
        "template": setup.follow_up.pk,
        "sender": setup.sender_a.pk,
        "touchpoint": "promotional",
    }
    return {**data, **changes}


def make_rule(tenant: Tenant, setup: Setup, campaign: Campaign | None = None) -> TriggerRule:
    campaign = campaign or setup.campaign_a
    return TriggerRule.objects.create(
        organisation=tenant.organisation,
        name="Rule",
        campaign=campaign,
        template=setup.follow_up,
        sender=setup.sender_a if campaign == setup.campaign_a else setup.sender_b,
    )


# --- trigger rules -----------------------------------------------------------------------------------


def test_the_empty_list_explains_with_the_faq_example(tenant: Tenant, login: Any) -> None:
    page = login(tenant.member).get(reverse("automation:rule_list")).content.decode()
    assert 'data-testid="empty-state"' in page
    assert "clicks the link to the offer" in page
    assert reverse("automation:rule_create") in page


def test_a_click_rule_on_one_of_the_campaigns_links_is_saved(tenant: Tenant, setup: Setup, login: Any) -> None:
    client = login(tenant.member)
    blank = client.get(reverse("automation:rule_create")).content.decode()
    assert f'value="{OFFER}"' not in blank  # links come with a campaign
    form = client.get(reverse("automation:rule_create"), {"campaign": setup.campaign_a.pk}).content.decode()
    assert f'value="{OFFER}"' in form
    response = client.post(reverse("automation:rule_create"), rule_data(setup))
    assert response.status_code == 302
    rule = TriggerRule.objects.get()
    assert (rule.campaign, rule.event, rule.link_url, rule.template, rule.sender, rule.promotional) == (
        setup.campaign_a,
        "click",
        OFFER,
        setup.follow_up,
        setup.sender_a,
        True,
    )
    assert rule.organisation == tenant.organisation
    assert rule.enabled


def test_another_link_address_and_not_opened_rules_are_saved(tenant: Tenant, setup: Setup, login: Any) -> None:
    client = login(tenant.member)
    client.post(
        reverse("automation:rule_create"),
        rule_data(setup, name="Other", link="other", link_other="https://shop.example/elsewhere"),
    )
    client.post(
        reverse("automation:rule_create"),
        rule_data(setup, name="Silent", event="not_opened", delay_days="3", touchpoint="transactional"),
    )
    other, silent = TriggerRule.objects.order_by("name")[:2]
    assert other.link_url == "https://shop.example/elsewhere"
    assert (silent.event, silent.delay_days, silent.link_url, silent.promotional) == ("not_opened", 3, "", False)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"sender": "sender_b"}, "sender", "sending account, “Alpha account”"),
        ({"event": "not_opened", "delay_days": ""}, "delay_days", "after how many days"),
        ({"event": "not_opened", "delay_days": "0"}, "delay_days", "greater than or equal to 1"),
        ({"link": "other", "link_other": ""}, "link_other", "Enter the address of the link"),
        ({"link": "other", "link_other": "javascript:alert(1)"}, "link_other", "starting with https://"),
        ({"link": "https://not-in-the-campaign.example/"}, "link", "Select a valid choice"),
        ({"template": "plain"}, "template", "needs an unsubscribe link"),
        ({"template": "client_b"}, "template", "belongs to another client"),
        ({"campaign": "untracked"}, "campaign", "does not track opens and clicks"),
        ({"name": ""}, "name", "This field is required"),
    ],
)
def test_mistakes_are_explained_and_nothing_is_saved(
    tenant: Tenant, setup: Setup, login: Any, changes: dict[str, str], field: str, message: str
) -> None:
    values: dict[str, Any] = dict(changes)
    if values.get("sender") == "sender_b":
        values["sender"] = setup.sender_b.pk
    if values.get("template") == "plain":
        values["template"] = Template.objects.create(
            organisation=tenant.organisation, name="Plain", slug="plain", subject="Hi", body="<p>No link</p>"
        ).pk
    if values.get("template") == "client_b":
        values["template"] = Template.objects.create(
            organisation=tenant.organisation,
            client=tenant.client_b,
            name="B",
            slug="b",
            subject="Hi",
            body=FOLLOW_UP_BODY,
        ).pk
    if values.get("campaign") == "untracked":
        values["campaign"] = _campaign(tenant, tenant.account_a, setup.sender_a, "Quiet", tracking=False).pk
    response = login(tenant.member).post(reverse("automation:rule_create"), rule_data(setup, **values))
    assert response.status_code == 400
    assert message in str(response.context["form"].errors[field])
    assert message.split("“")[0] in response.content.decode().replace("&#x27;", "'")
    assert not TriggerRule.objects.exists()


def test_the_link_choices_follow_the_chosen_campaign(tenant: Tenant, setup: Setup, login: Any) -> None:
    client = login(tenant.member)
    page = client.get(reverse("automation:rule_links"), {"campaign": setup.campaign_a.pk}).content.decode()
    assert f'value="{OFFER}"' in page
    assert f'value="{OTHER}"' in page
    assert "contact.email" not in page  # a personalised link cannot be chosen one by one
    assert "Any link" in page


def test_the_list_counts_what_each_rule_sent(tenant: Tenant, setup: Setup, login: Any) -> None:
    rule = make_rule(tenant, setup)
    for n, status in enumerate(["queued", "queued", "suppressed", "refused"]):
        Firing.objects.create(rule=rule, organisation=tenant.organisation, email=f"p{n}@example.net", status=status)
    page = login(tenant.member).get(reverse("automation:rule_list")).content.decode()
    assert 'data-testid="fired-count"><span class="fw-semibold">4</span>' in page
    assert "1 suppressed" in page
    assert "1 refused" in page


def test_switching_off_and_deleting(tenant: Tenant, setup: Setup, login: Any) -> None:
    rule = make_rule(tenant, setup)
    client = login(tenant.member)
    client.post(reverse("automation:rule_toggle", args=[rule.pk]))
    rule.refresh_from_db()
    assert rule.enabled is False
    client.post(reverse("automation:rule_toggle", args=[rule.pk]))
    rule.refresh_from_db()
    assert rule.enabled is True
    client.post(reverse("automation:rule_delete", args=[rule.pk]))
    assert not TriggerRule.objects.exists()


def test_editing_resets_the_not_opened_scan(tenant: Tenant, setup: Setup, login: Any) -> None:
    rule = make_rule(tenant, setup)
    TriggerRule.objects.filter(pk=rule.pk).update(event="not_opened", delay_days=3, scanned_until=timezone.now())
    response = login(tenant.member).post(
        reverse("automation:rule_edit", args=[rule.pk]), rule_data(setup, event="not_opened", delay_days="5")
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.delay_days, rule.scanned_until) == (5, None)


def test_outsiders_get_404_everywhere(tenant: Tenant, setup: Setup, outsider: User, login: Any) -> None:
    rule = make_rule(tenant, setup)
    client = login(outsider)
    assert client.get(reverse("automation:rule_edit", args=[rule.pk])).status_code == 404
    assert client.post(reverse("automation:rule_edit", args=[rule.pk]), rule_data(setup)).status_code == 404
    assert client.post(reverse("automation:rule_toggle", args=[rule.pk])).status_code == 404
    assert client.post(reverse("automation:rule_delete", args=[rule.pk])).status_code == 404
    assert (
        reverse("automation:rule_edit", args=[rule.pk])
        not in client.get(reverse("automation:rule_list")).content.decode()
    )
    links = client.get(reverse("automation:rule_links"), {"campaign": setup.campaign_a.pk}).content.decode()
    assert OFFER not in links
    # and a rule cannot be made on another organisation's campaign
    response = client.post(reverse("automation:rule_create"), rule_data(setup))
    assert response.status_code == 400
    assert TriggerRule.objects.count() == 1


def test_client_users_see_and_use_only_their_clients_campaigns(tenant: Tenant, setup: Setup, login: Any) -> None:
    own = make_rule(tenant, setup)
    foreign = make_rule(tenant, setup, campaign=setup.campaign_b)
    client = login(tenant.client_user)
    page = client.get(reverse("automation:rule_list")).content.decode()
    assert reverse("automation:rule_edit", args=[own.pk]) in page
    assert reverse("automation:rule_edit", args=[foreign.pk]) not in page
    assert client.get(reverse("automation:rule_edit", args=[foreign.pk])).status_code == 404
    response = client.post(
        reverse("automation:rule_create"),
        rule_data(setup, campaign=setup.campaign_b.pk, sender=setup.sender_b.pk),
    )
    assert response.status_code == 400
    assert {"campaign", "sender"} <= set(response.context["form"].errors)
    assert not TriggerRule.objects.filter(campaign=setup.campaign_b, name="Offer clicked").exists()


def test_the_rule_page_shows_recent_firings(tenant: Tenant, setup: Setup, login: Any) -> None:
    rule = make_rule(tenant, setup)
    Firing.objects.create(
        rule=rule, organisation=tenant.organisation, email="ann@example.net", status="refused", error="No credits."
    )
    page = login(tenant.member).get(reverse("automation:rule_edit", args=[rule.pk])).content.decode()
    assert "ann@example.net" in page
    assert "No credits." in page


# --- webhooks ------------------------------------------------------------------------------------------


def endpoint_data(**changes: Any) -> dict[str, Any]:
    data = {
        "url": "http://127.0.0.1:9/hook",
        "description": "CRM",
        "client": "",
        "event_types": ["delivery", "bounce"],
    }
    return {**data, **changes}


@pytest.mark.usefixtures("local_webhooks")
def test_an_admin_adds_an_endpoint_and_sees_the_secret_once(tenant: Tenant, login: Any) -> None:
    client = login(tenant.admin)
    assert 'data-testid="empty-state"' in client.get(reverse("automation:endpoint_list")).content.decode()
    response = client.post(reverse("automation:endpoint_create"), endpoint_data())
    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret in response.content.decode()
    assert (endpoint.organisation, endpoint.client, endpoint.event_types) == (
        tenant.organisation,
        None,
        ["delivery", "bounce"],
    )
    detail = client.get(reverse("automation:endpoint_detail", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in detail
    assert endpoint.secret_hint in detail
    assert "XES-Signature" in detail
    # only owners may show it again
    assert client.post(reverse("automation:endpoint_reveal_secret", args=[endpoint.pk])).status_code == 403
    owner = login(tenant.owner)
    revealed = owner.post(reverse("automation:endpoint_reveal_secret", args=[endpoint.pk]))
    assert endpoint.secret in revealed.content.decode()
    assert revealed["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("local_webhooks")
def test_a_new_secret_replaces_the_old_one(tenant: Tenant, login: Any) -> None:
    endpoint = WebhookEndpoint.objects.create(organisation=tenant.organisation, url="http://127.0.0.1:9/")
    old = endpoint.secret
    page = login(tenant.admin).post(reverse("automation:endpoint_rotate_secret", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.secret in page.content.decode()


@pytest.mark.usefixtures("production_webhooks")
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://10.0.0.1/hook", "public internet addresses"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://hooks.example.com/", "https://"),
        ("hooks.example.com/no-scheme", "https://"),
    ],
)
def test_unsafe_endpoint_urls_are_refused_when_saving(tenant: Tenant, login: Any, url: str, message: str) -> None:
    response = login(tenant.admin).post(reverse("automation:endpoint_create"), endpoint_data(url=url))
    assert response.status_code == 400
    assert message in str(response.context["form"].errors["url"])
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.usefixtures("local_webhooks")
def test_members_and_client_users_may_look_but_not_manage(tenant: Tenant, login: Any) -> None:
    endpoint = WebhookEndpoint.objects.create(
        organisation=tenant.organisation, client=tenant.client_a, url="http://127.0.0.1:9/"
    )
    for user in (tenant.member, tenant.client_user):
        client = login(user)
        assert client.get(reverse("automation:endpoint_detail", args=[endpoint.pk])).status_code == 200
        assert client.get(reverse("automation:endpoint_create")).status_code == 403
        assert client.post(reverse("automation:endpoint_create"), endpoint_data()).status_code == 403
        assert client.post(reverse("automation:endpoint_test", args=[endpoint.pk])).status_code == 403
        assert client.post(reverse("automation:endpoint_delete", args=[endpoint.pk])).status_code == 403
        assert client.post(reverse("automation:endpoint_rotate_secret", args=[endpoint.pk])).status_code == 403
    assert WebhookEndpoint.objects.count() == 1


def test_client_users_see_only_their_clients_endpoints(tenant: Tenant, login: Any) -> None:
    mine = WebhookEndpoint.objects.create(organisation=tenant.organisation, client=tenant.client_a, url="https://a/")
    other = WebhookEndpoint.objects.create(organisation=tenant.organisation, client=tenant.client_b, url="https://b/")
    everyone = WebhookEndpoint.objects.create(organisation=tenant.organisation, url="https://org/")
    client = login(tenant.client_user)
    page = client.get(reverse("automation:endpoint_list")).content.decode()
    assert reverse("automation:endpoint_detail", args=[mine.pk]) in page
    for hidden in (other, everyone):
        assert reverse("automation:endpoint_detail", args=[hidden.pk]) not in page
        assert client.get(reverse("automation:endpoint_detail", args=[hidden.pk])).status_code == 404


def test_outsiders_get_404_for_endpoints_and_deliveries(tenant: Tenant, outsider: User, login: Any) -> None:
    endpoint = WebhookEndpoint.objects.create(organisation=tenant.organisation, url="https://hooks.example/")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, payload="{}", status="failed", attempts=6)
    client = login(outsider)
    pk, dpk = endpoint.pk, delivery.pk
    for name, args, method in [
        ("endpoint_detail", [pk], "get"),
        ("endpoint_edit", [pk], "get"),
        ("endpoint_test", [pk], "post"),
        ("endpoint_toggle", [pk], "post"),
        ("endpoint_delete", [pk], "post"),
        ("endpoint_reveal_secret", [pk], "post"),
        ("endpoint_rotate_secret", [pk], "post"),
        ("delivery_detail", [pk, dpk], "get"),
        ("delivery_retry", [pk, dpk], "post"),
    ]:
        response = getattr(client, method)(reverse(f"automation:{name}", args=args))
        assert response.status_code == 404, name
    assert "hooks.example" not in client.get(reverse("automation:endpoint_list")).content.decode()
    # a delivery is only found under its own endpoint
    own = WebhookEndpoint.objects.create(organisation=outsider.memberships.get().organisation, url="https://o/")
    assert client.get(reverse("automation:delivery_detail", args=[own.pk, dpk])).status_code == 404


@pytest.mark.usefixtures("local_webhooks")
def test_send_test_event_queues_a_delivery_and_the_log_shows_it(
    tenant: Tenant, login: Any, django_capture_on_commit_callbacks
) -> None:
    endpoint = WebhookEndpoint.objects.create(organisation=tenant.organisation, url="http://127.0.0.1:9/")
    client = login(tenant.admin)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("automation:endpoint_test", args=[endpoint.pk]))
    assert response.status_code == 302
    assert callbacks  # the delivery job is queued after commit
    delivery = WebhookDelivery.objects.get()
    assert delivery.kind == "test"
    page = client.get(reverse("automation:endpoint_detail", args=[endpoint.pk])).content.decode()
    assert f'data-delivery="{delivery.pk}"' in page
    detail = client.get(reverse("automation:delivery_detail", args=[endpoint.pk, delivery.pk])).content.decode()
    assert "&quot;type&quot;: &quot;test&quot;" in detail


def test_retry_now_from_the_log(tenant: Tenant, login: Any, django_capture_on_commit_callbacks) -> None:
    endpoint = WebhookEndpoint.objects.create(organisation=tenant.organisation, url="https://hooks.example/")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, payload="{}", status="failed", attempts=6)
    with django_capture_on_commit_callbacks(execute=False):
        login(tenant.admin).post(reverse("automation:delivery_retry", args=[endpoint.pk, delivery.pk]))
    delivery.refresh_from_db()
    assert delivery.status == "retrying"


def test_the_delivery_log_query_count_does_not_grow(
    tenant: Tenant, login: Any, django_assert_max_num_queries: Any
) -> None:
    endpoint = WebhookEndpoint.objects.create(organisation=tenant.organisation, url="https://hooks.example/")
    WebhookDelivery.objects.bulk_create(WebhookDelivery(endpoint=endpoint, payload="{}") for _n in range(30))
    client = login(tenant.admin)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("automation:endpoint_detail", args=[endpoint.pk])).status_code == 200
