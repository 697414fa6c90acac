"""The XES team's back office: every page of the accounts models opens, the actions work, and
only staff get in."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    ApiKey,
    Client,
    Invitation,
    Membership,
    Organisation,
    SenderAddress,
    SenderVerificationEmail,
    SendingAccount,
    User,
)
from tests.conftest import Tenant
from tests.factories import (
    ApiKeyFactory,
    ClientFactory,
    MembershipFactory,
    SenderAddressFactory,
    SendingAccountFactory,
    UserFactory,
)

ACCOUNTS_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "accounts"),
    key=lambda model: model._meta.model_name or "",
)


def _url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def back_office(tenant: Tenant, staff_user: User, client: HttpClient) -> HttpClient:
    """A staff superuser's browser, with at least one row of every accounts model."""
    ApiKeyFactory(sending_account=tenant.account_a, name="Alpha key")
    Invitation.objects.create(organisation=tenant.organisation, email="new@acme.example", role="member")
    SenderVerificationEmail.objects.create(sender=tenant.sender_a)
    client.force_login(staff_user)
    return client


def _more_rows(n: int) -> None:
    """``n`` more organisations, each with one of everything: an N+1 shows as ``n`` extra queries."""
    for i in range(n):
        membership = MembershipFactory(organisation__name=f"Org {i}", user__email=f"u{i}@x.example")
        organisation = membership.organisation
        client = ClientFactory(organisation=organisation)
        account = SendingAccountFactory(organisation=organisation, client=client)
        sender = SenderAddressFactory(sending_account=account)
        SenderVerificationEmail.objects.create(sender_id=sender.pk)
        ApiKeyFactory(sending_account=account, created_by=membership.user)
        Invitation.objects.create(
            organisation=organisation, email=f"i{i}@x.example", role="member", invited_by=membership.user
        )


def test_every_accounts_model_is_registered() -> None:
    names = {model._meta.model_name for model in ACCOUNTS_MODELS}

    assert names >= {
        "user",
        "organisation",
        "client",
        "membership",
        "invitation",
        "sendingaccount",
        "senderaddress",
        "senderverificationemail",
        "apikey",
    }


@pytest.mark.parametrize("model", ACCOUNTS_MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_opens_with_a_bounded_number_of_queries(
    back_office: HttpClient, django_assert_max_num_queries: Any, model: type[models.Model]
) -> None:
    _more_rows(6)

    with django_assert_max_num_queries(10):
        response = back_office.get(_url(model, "changelist"))

    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


@pytest.mark.parametrize("model", ACCOUNTS_MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_search_answers(back_office: HttpClient, model: type[models.Model]) -> None:
    response = back_office.get(_url(model, "changelist"), {"q": "acme"})

    assert response.status_code == 200


@pytest.mark.parametrize("model", ACCOUNTS_MODELS, ids=lambda m: m._meta.model_name)
def test_change_page_opens(back_office: HttpClient, model: type[models.Model]) -> None:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None

    response = back_office.get(_url(model, "change", obj.pk))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "model",
    [m for m in ACCOUNTS_MODELS if m not in (ApiKey, Invitation)],
    ids=lambda m: m._meta.model_name,
)
def test_add_page_opens(back_office: HttpClient, model: type[models.Model]) -> None:
    response = back_office.get(_url(model, "add"))

    assert response.status_code == 200


@pytest.mark.parametrize("model", [ApiKey, Invitation], ids=["apikey", "invitation"])
def test_keys_and_invitations_cannot_be_added_in_the_back_office(
    back_office: HttpClient, model: type[models.Model]
) -> None:
    """Only the portal can show a new key's secret once, or e-mail an invitation's link."""
    response = back_office.get(_url(model, "add"))

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("model", "search", "found", "not_found"),
    [
        (Client, "Alpha", "Alpha Bakery", "Beta Cars"),
        (Organisation, "owner@acme.example", "Acme Agency", "Org 0"),  # by a member's e-mail
        (SenderAddress, "Acme Agency", "news@alpha.example", "@example.com"),  # by the organisation's name
    ],
    ids=["client", "organisation", "senderaddress"],
)
def test_search_filters_rows(
    back_office: HttpClient, model: type[models.Model], search: str, found: str, not_found: str
) -> None:
    _more_rows(1)

    response = back_office.get(_url(model, "changelist"), {"q": search})

    html = response.content.decode()
    assert found in html
    assert not_found not in html
    assert response.context["cl"].result_count < response.context["cl"].full_result_count


def test_organisation_page_shows_members_clients_and_sending_accounts(back_office: HttpClient, tenant: Tenant) -> None:
    html = back_office.get(_url(Organisation, "change", tenant.organisation.pk)).content.decode()

    for text in (
        "owner@acme.example",
        "alpha@acme.example",
        "Alpha Bakery",
        "Beta Cars",
        "Acme main",
        "Alpha account",
        "Beta account",
    ):
        assert text in html


def test_resend_verification_action_sends_an_email(
    back_office: HttpClient, tenant: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = back_office.post(
            _url(SenderAddress, "changelist"),
            {"action": "resend_verification", "_selected_action": [tenant.sender_b.pk]},
            follow=True,
        )

    assert response.status_code == 200
    assert [m.to for m in mailoutbox] == [["news@beta.example"]]
    assert tenant.sender_b.verification_emails.count() == 1
    assert "1 verification link sent." in response.content.decode()


def test_resend_verification_action_skips_verified_addresses_with_a_warning(
    back_office: HttpClient, tenant: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    sender = SenderAddressFactory(sending_account=tenant.account_a, verified_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        response = back_office.post(
            _url(SenderAddress, "changelist"),
            {"action": "resend_verification", "_selected_action": [sender.pk]},
            follow=True,
        )

    assert mailoutbox == []
    assert "already verified" in response.content.decode()


def test_revoke_action_revokes_the_selected_keys_only(back_office: HttpClient, tenant: Tenant) -> None:
    chosen = ApiKeyFactory(sending_account=tenant.account_b, name="Beta key")
    other = ApiKey.objects.get(name="Alpha key")

    response = back_office.post(
        _url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [chosen.pk]}, follow=True
    )

    assert response.status_code == 200
    chosen.refresh_from_db()
    other.refresh_from_db()
    assert chosen.revoked_at is not None
    assert other.revoked_at is None
    assert "1 key revoked." in response.content.decode()


@pytest.mark.parametrize("view", ["index", "changelist"])
def test_portal_owner_without_staff_status_is_sent_to_the_admin_login(tenant: Tenant, login: Any, view: str) -> None:
    url = reverse("admin:index") if view == "index" else _url(Organisation, "changelist")

    response = login(tenant.owner).get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_portal_owner_cannot_run_an_admin_action(tenant: Tenant, login: Any) -> None:
    key = ApiKeyFactory(sending_account=tenant.account_a)

    response = login(tenant.owner).post(_url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [key.pk]})

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is None


# --- saving through the change forms ------------------------------------------------------


def _form_data(response: Any) -> dict[str, Any]:
    """The POST data a browser would send back unchanged from an admin add or change page."""
    data: dict[str, Any] = {}
    forms: list[Any] = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms.append(formset.management_form)
        forms.extend(formset.forms)
    for form in forms:
        for bound in form:
            if bound.field.disabled:
                continue
            value = bound.value()
            widget = bound.field.widget
            if hasattr(widget, "widgets") and hasattr(widget, "decompress"):
                parts = value if isinstance(value, list) else widget.decompress(value)
                for i, part in enumerate(parts):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
            elif isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
            elif isinstance(value, list | tuple):
                data[bound.html_name] = [str(v) for v in value]
            elif value is not None:
                data[bound.html_name] = str(value)
    return data


def _add_inline_row(data: dict[str, Any], prefix: str, row: dict[str, Any]) -> None:
    n = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(n + 1)
    for key, value in row.items():
        data[f"{prefix}-{n}-{key}"] = value


def test_organisation_page_saves_unchanged(back_office: HttpClient, tenant: Tenant) -> None:
    url = _url(Organisation, "change", tenant.organisation.pk)
    data = _form_data(back_office.get(url))

    response = back_office.post(url, data)

    assert response.status_code == 302, response.context["errors"] if response.context else response


def test_user_page_adds_a_membership(back_office: HttpClient, tenant: Tenant) -> None:
    user = UserFactory(email="late@acme.example")
    url = _url(User, "change", user.pk)
    data = _form_data(back_office.get(url))
    _add_inline_row(data, "memberships", {"organisation": tenant.organisation.pk, "role": "member"})

    response = back_office.post(url, data)

    assert response.status_code == 302
    assert Membership.objects.get(user=user).organisation == tenant.organisation


def test_client_page_adds_a_sending_account_to_the_clients_organisation(
    back_office: HttpClient, tenant: Tenant
) -> None:
    url = _url(Client, "change", tenant.client_a.pk)
    data = _form_data(back_office.get(url))
    _add_inline_row(data, "sending_accounts", {"name": "Alpha second", "standing": "good"})

    response = back_office.post(url, data)

    assert response.status_code == 302
    account = SendingAccount.objects.get(name="Alpha second")
    assert (account.organisation, account.client) == (tenant.organisation, tenant.client_a)


def test_client_page_refuses_a_sending_account_name_taken_in_the_organisation(
    back_office: HttpClient, tenant: Tenant
) -> None:
    url = _url(Client, "change", tenant.client_a.pk)
    data = _form_data(back_office.get(url))
    _add_inline_row(data, "sending_accounts", {"name": "acme MAIN", "standing": "good"})

    response = back_office.post(url, data)

    assert response.status_code == 200
    assert SendingAccount.objects.filter(name__iexact="acme main").count() == 1


def test_organisation_page_offers_only_its_own_clients_for_sending_accounts(
    back_office: HttpClient, tenant: Tenant
) -> None:
    ClientFactory(name="Foreign client")

    response = back_office.get(_url(Organisation, "change", tenant.organisation.pk))

    formset = next(
        f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "sending_accounts"
    )
    assert set(formset.forms[0].fields["client"].queryset) == {tenant.client_a, tenant.client_b}


def test_organisation_page_refuses_another_organisations_client_for_a_sending_account(
    back_office: HttpClient, tenant: Tenant
) -> None:
    foreign = ClientFactory(name="Foreign client")
    url = _url(Organisation, "change", tenant.organisation.pk)
    data = _form_data(back_office.get(url))
    _add_inline_row(data, "sending_accounts", {"name": "Mixed", "client": foreign.pk, "standing": "good"})

    response = back_office.post(url, data)

    assert response.status_code == 200
    assert not SendingAccount.objects.filter(name="Mixed").exists()


def test_organisation_page_refuses_a_client_user_of_another_organisations_client(
    back_office: HttpClient, tenant: Tenant
) -> None:
    foreign = ClientFactory(name="Foreign client")
    newcomer = UserFactory(email="mixed@acme.example")
    url = _url(Organisation, "change", tenant.organisation.pk)
    data = _form_data(back_office.get(url))
    _add_inline_row(data, "memberships", {"user": newcomer.pk, "role": "client_user", "client": foreign.pk})

    response = back_office.post(url, data)

    assert response.status_code == 200
    assert not Membership.objects.filter(user=newcomer).exists()


@pytest.mark.parametrize(
    ("model", "target", "field"),
    [
        (SendingAccount, lambda t: t.account_org, "client"),
        (Membership, lambda t: Membership.objects.get(user=t.client_user), "client"),
    ],
    ids=["sendingaccount", "membership"],
)
def test_change_page_refuses_another_organisations_client(
    back_office: HttpClient, tenant: Tenant, model: type[models.Model], target: Any, field: str
) -> None:
    foreign = ClientFactory(name="Foreign client")
    obj = target(tenant)
    url = _url(model, "change", obj.pk)
    data = _form_data(back_office.get(url))
    data[field] = str(foreign.pk)

    response = back_office.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    obj.refresh_from_db()
    assert getattr(obj, field) != foreign


def test_membership_page_refuses_a_client_for_a_member(back_office: HttpClient, tenant: Tenant) -> None:
    """The database's check constraint answers as a form error, not as a crash."""
    membership = Membership.objects.get(user=tenant.member)
    url = _url(Membership, "change", membership.pk)
    data = _form_data(back_office.get(url))
    data["client"] = str(tenant.client_a.pk)

    response = back_office.post(url, data)

    assert response.status_code == 200
    membership.refresh_from_db()
    assert membership.client is None


def test_staff_cannot_demote_or_delete_the_last_owner(client, staff_user, tenant) -> None:
    from accounts.models import Membership

    owner = Membership.objects.get(user=tenant.owner)
    client.force_login(staff_user)
    url = f"/admin/accounts/membership/{owner.pk}/change/"

    response = client.post(url, {"user": owner.user_id, "organisation": owner.organisation_id, "role": "member"})
    assert response.status_code == 200
    assert "at least one owner" in response.content.decode()

    client.post(f"/admin/accounts/membership/{owner.pk}/delete/", {"post": "yes"})
    owner.refresh_from_db()
    assert owner.role == Membership.Role.OWNER


def test_changing_the_cloud_flag_in_the_admin_tells_the_plans_app(client, staff_user, tenant) -> None:
    from accounts.signals import organisation_flags_changed

    received = []

    def receiver(sender, organisation, **kwargs):  # type: ignore[no-untyped-def]
        received.append(organisation.pk)

    organisation_flags_changed.connect(receiver)
    try:
        client.force_login(staff_user)
        org = tenant.organisation
        data = {
            "name": org.name,
            "billing_email": "",
            "time_zone": "Europe/Berlin",
            "is_cloud_emedia_customer": "on",
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        }
        for prefix in ("memberships", "clients", "sending_accounts"):
            data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
        response = client.post(f"/admin/accounts/organisation/{org.pk}/change/", data)
    finally:
        organisation_flags_changed.disconnect(receiver)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert received == [org.pk]


def test_the_standing_is_changed_only_through_the_reputation_review(back_office: HttpClient, tenant: Tenant) -> None:
    url = _url(SendingAccount, "change", tenant.account_a.pk)
    page = back_office.get(url)
    data = _form_data(page)
    data["standing"] = "suspended"  # a hand-made POST: the field is read-only, so it is ignored

    response = back_office.post(url, data)

    assert response.status_code == 302
    tenant.account_a.refresh_from_db()
    assert tenant.account_a.standing == SendingAccount.Standing.GOOD
    assert reverse("admin:reputation_watchedaccount_change", args=[tenant.account_a.pk]) in page.content.decode()
