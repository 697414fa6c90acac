"""Members: invitations by e-mail with a role, role changes, removal (issue: "Members can invite users
by e-mail with a role; owners can change roles and remove members")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Invitation, Membership, User
from tests.conftest import Tenant
from tests.factories import PASSWORD, ClientFactory, MembershipFactory, UserFactory

NEW_PASSWORD = "a-long-new-passphrase-42"
ACCEPT_PATH = re.compile(r"https?://[^/\s\"]+(/invitations/[^/\s\"]+/)")


def _invite(http: HttpClient, capture: Any, email: str, role: str = "member", client_pk: int | None = None) -> Any:
    data: dict[str, Any] = {"email": email, "role": role}
    if client_pk is not None:
        data["client"] = client_pk
    with capture(execute=True):
        return http.post(reverse("member_invite"), data)


def _accept_path(message: mail.EmailMessage) -> str:
    match = ACCEPT_PATH.search(str(message.body))
    assert match is not None, message.body
    return match.group(1)


@pytest.fixture
def invited(tenant: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]) -> str:
    """The owner (in a browser of their own) invites new@acme.example as member; returns the accept
    path from the e-mail. The ``client`` fixture stays logged out."""
    owner_http = HttpClient()
    owner_http.force_login(tenant.owner)
    response = _invite(owner_http, django_capture_on_commit_callbacks, "New@Acme.example")
    assert response.status_code == 302
    path = _accept_path(mailoutbox[-1])
    mailoutbox.clear()
    return path


def _membership(tenant: Tenant, email: str) -> Membership | None:
    return Membership.objects.filter(organisation=tenant.organisation, user__email=email).first()


# --- inviting -----------------------------------------------------------------------------


def test_owner_invite_sends_one_email_with_the_link_in_both_parts(
    tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    response = _invite(login(tenant.owner), django_capture_on_commit_callbacks, "new@acme.example", role="admin")

    assert response.status_code == 302
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["new@acme.example"]
    assert "Acme Agency" in message.subject or "Acme Agency" in message.body
    path = _accept_path(message)
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert path in html
    assert "Acme Agency" in html
    assert "Admin" in message.body


def test_invitation_is_stored_with_role_and_lower_cased_address(tenant: Tenant, invited: str) -> None:
    invitation = Invitation.objects.get(organisation=tenant.organisation)

    assert (invitation.email, invitation.role, invitation.client, invitation.invited_by) == (
        "new@acme.example",
        "member",
        None,
        tenant.owner,
    )


def test_pending_invitation_is_listed_on_the_members_page(tenant: Tenant, login: Any, invited: str) -> None:
    html = login(tenant.owner).get(reverse("member_list")).content.decode()

    assert "new@acme.example" in html
    assert reverse("invitation_revoke", args=[Invitation.objects.get().pk]) in html


def test_admin_is_not_offered_the_owner_role(tenant: Tenant, login: Any) -> None:
    response = login(tenant.admin).get(reverse("member_list"))

    roles = [value for value, _label in response.context["invite_form"].fields["role"].choices]
    assert "owner" not in roles
    assert "admin" in roles


def test_admin_cannot_invite_an_owner(
    tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    response = _invite(login(tenant.admin), django_capture_on_commit_callbacks, "boss@acme.example", role="owner")

    assert response.status_code == 400
    assert response.context["invite_form"].errors["role"]
    assert not Invitation.objects.exists()
    assert mailoutbox == []


def test_owner_can_invite_an_owner(tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any) -> None:
    _invite(login(tenant.owner), django_capture_on_commit_callbacks, "boss@acme.example", role="owner")

    assert Invitation.objects.get().role == "owner"


def test_client_user_invitation_needs_a_client(
    tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any
) -> None:
    response = _invite(login(tenant.owner), django_capture_on_commit_callbacks, "c@acme.example", role="client_user")

    assert response.status_code == 400
    assert "Choose the client" in response.content.decode()
    assert not Invitation.objects.exists()


def test_inviting_an_existing_member_is_refused(
    tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    response = _invite(login(tenant.owner), django_capture_on_commit_callbacks, "MEMBER@acme.example")

    assert response.status_code == 400
    assert "already a member" in response.content.decode()
    assert mailoutbox == []


def test_invalid_address_is_refused(tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any) -> None:
    response = _invite(login(tenant.owner), django_capture_on_commit_callbacks, "not-an-address")

    assert response.status_code == 400
    assert response.context["invite_form"].errors["email"]


# --- accepting ----------------------------------------------------------------------------


def test_person_without_login_sets_a_password_and_joins(tenant: Tenant, client: HttpClient, invited: str) -> None:
    page = client.get(invited)
    assert page.status_code == 200
    assert "Create login and join" in page.content.decode()

    response = client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    user = User.objects.get(email="new@acme.example")
    assert user.check_password(NEW_PASSWORD)
    assert int(client.session["_auth_user_id"]) == user.pk
    membership = _membership(tenant, "new@acme.example")
    assert membership is not None
    assert (membership.role, membership.client) == ("member", None)
    assert client.get(reverse("client_list")).status_code == 200


def test_signup_through_invitation_marks_the_address_verified(tenant: Tenant, client: HttpClient, invited: str) -> None:
    from allauth.account.models import EmailAddress

    client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert EmailAddress.objects.get(email="new@acme.example").verified


def test_signup_through_invitation_with_differing_passwords_creates_nothing(
    tenant: Tenant, client: HttpClient, invited: str
) -> None:
    response = client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"})

    assert response.status_code == 200
    assert response.context["form"].errors["password2"]
    assert not User.objects.filter(email="new@acme.example").exists()
    assert Invitation.objects.get().accepted_at is None


def test_signup_through_invitation_checks_password_strength(tenant: Tenant, client: HttpClient, invited: str) -> None:
    response = client.post(invited, {"password1": "123", "password2": "123"})

    assert response.context["form"].errors["password1"]
    assert not User.objects.filter(email="new@acme.example").exists()


def test_invited_client_user_joins_bound_to_its_client(
    tenant: Tenant,
    login: Any,
    client: HttpClient,
    django_capture_on_commit_callbacks: Any,
    mailoutbox: list[Any],
) -> None:
    _invite(
        login(tenant.owner),
        django_capture_on_commit_callbacks,
        "bea@beta.example",
        role="client_user",
        client_pk=tenant.client_b.pk,
    )
    path = _accept_path(mailoutbox[0])
    client.logout()

    client.post(path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    membership = _membership(tenant, "bea@beta.example")
    assert membership is not None
    assert (membership.role, membership.client) == ("client_user", tenant.client_b)
    html = client.get(reverse("client_list")).content.decode()
    assert "Beta Cars" in html
    assert "Alpha Bakery" not in html


def test_existing_user_who_is_logged_out_is_asked_to_log_in(tenant: Tenant, client: HttpClient, invited: str) -> None:
    UserFactory(email="new@acme.example")

    response = client.get(invited)

    assert response.status_code == 200
    assert response.context["form"] is None
    assert reverse("account_login") + "?next=" + invited in response.content.decode()


def test_existing_user_who_is_logged_out_cannot_join_by_posting_a_password(
    tenant: Tenant, client: HttpClient, invited: str
) -> None:
    user = UserFactory(email="new@acme.example")

    client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert _membership(tenant, "new@acme.example") is None


def test_existing_user_accepts_when_logged_in(tenant: Tenant, login: Any, invited: str) -> None:
    user = UserFactory(email="new@acme.example")
    MembershipFactory(user=user, role="owner")  # already in another organisation
    http = login(user)

    response = http.post(invited)

    assert response.status_code == 302
    membership = _membership(tenant, "new@acme.example")
    assert membership is not None
    assert membership.role == "member"
    # The session switched to the organisation just joined.
    assert "Alpha Bakery" in http.get(reverse("client_list")).content.decode()


def test_wrong_logged_in_user_is_refused(tenant: Tenant, login: Any, invited: str) -> None:
    intruder = UserFactory(email="intruder@example.com")
    http = login(intruder)

    page = http.get(invited)
    response = http.post(invited, follow=True)

    assert "You are logged in as someone else" in page.content.decode()
    assert "This invitation is for new@acme.example" in response.content.decode()
    assert not Membership.objects.filter(user=intruder).exists()
    assert Invitation.objects.get().accepted_at is None


def test_used_link_shows_the_invalid_page(tenant: Tenant, client: HttpClient, invited: str) -> None:
    client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    response = client.get(invited)

    assert response.status_code == 410
    assert "This invitation cannot be used" in response.content.decode()


def test_withdrawn_link_shows_the_invalid_page(tenant: Tenant, login: Any, invited: str) -> None:
    http = login(tenant.owner)
    http.post(reverse("invitation_revoke", args=[Invitation.objects.get().pk]))
    http.logout()

    response = http.get(invited)

    assert response.status_code == 410
    assert not Invitation.objects.exists()


def test_tampered_link_shows_the_invalid_page(tenant: Tenant, client: HttpClient, invited: str) -> None:
    token = invited.rstrip("/").rsplit("/", 1)[1]
    tampered = reverse("accept_invitation", args=[token[:-2] + ("AA" if token[-2:] != "AA" else "BB")])

    response = client.post(tampered, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 410
    assert not User.objects.filter(email="new@acme.example").exists()


def test_expired_link_shows_the_invalid_page(tenant: Tenant, client: HttpClient, invited: str) -> None:
    with time_machine.travel(datetime.now(tz=UTC) + timedelta(days=8)):
        response = client.get(invited)

    assert response.status_code == 410


def test_accepted_link_cannot_be_replayed_by_another_logged_in_user(
    tenant: Tenant, client: HttpClient, login: Any, invited: str
) -> None:
    client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    client.logout()

    response = login(tenant.member).post(invited)

    assert response.status_code == 410


# --- changing roles -----------------------------------------------------------------------


def _change_role(http: HttpClient, membership: Membership, role: str, client_pk: int | None = None) -> Any:
    data: dict[str, Any] = {f"m{membership.pk}-role": role}
    if client_pk is not None:
        data[f"m{membership.pk}-client"] = client_pk
    return http.post(reverse("member_change_role", args=[membership.pk]), data, follow=True)


def test_owner_changes_a_members_role(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)

    response = _change_role(login(tenant.owner), member, "admin")

    member.refresh_from_db()
    assert member.role == "admin"
    assert "member@acme.example is now Admin." in response.content.decode()


def test_member_to_client_user_without_a_client_is_refused_with_a_message(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)

    response = _change_role(login(tenant.owner), member, "client_user")

    assert "Choose the client whose data this client user may see." in response.content.decode()
    member.refresh_from_db()
    assert (member.role, member.client) == ("member", None)


def test_member_to_client_user_with_a_client(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)

    _change_role(login(tenant.owner), member, "client_user", tenant.client_b.pk)

    member.refresh_from_db()
    assert (member.role, member.client) == ("client_user", tenant.client_b)


def test_client_user_to_member_drops_the_client(tenant: Tenant, login: Any) -> None:
    client_user = Membership.objects.get(user=tenant.client_user)

    _change_role(login(tenant.owner), client_user, "member", tenant.client_a.pk)

    client_user.refresh_from_db()
    assert (client_user.role, client_user.client) == ("member", None)


def test_unknown_role_is_refused(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)

    response = _change_role(login(tenant.owner), member, "superuser")

    assert "Select a valid choice" in response.content.decode()
    member.refresh_from_db()
    assert member.role == "member"


def test_last_owner_cannot_be_demoted(tenant: Tenant, login: Any) -> None:
    owner = Membership.objects.get(user=tenant.owner)

    response = _change_role(login(tenant.owner), owner, "admin")

    assert "An organisation needs at least one owner" in response.content.decode()
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_owner_can_step_down_when_another_owner_exists(tenant: Tenant, login: Any) -> None:
    MembershipFactory(organisation=tenant.organisation, role="owner")
    owner = Membership.objects.get(user=tenant.owner)

    _change_role(login(tenant.owner), owner, "admin")

    owner.refresh_from_db()
    assert owner.role == "admin"


def test_owner_sees_role_forms_and_admin_does_not(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)
    role_url = reverse("member_change_role", args=[member.pk])

    assert role_url in login(tenant.owner).get(reverse("member_list")).content.decode()
    assert role_url not in login(tenant.admin).get(reverse("member_list")).content.decode()


# --- removing members ---------------------------------------------------------------------


def test_owner_removes_a_member(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)

    response = login(tenant.owner).post(reverse("member_remove", args=[member.pk]), follow=True)

    assert "member@acme.example was removed." in response.content.decode()
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert User.objects.filter(pk=tenant.member.pk).exists()  # the login stays; only the membership goes


def test_last_owner_cannot_be_removed(tenant: Tenant, login: Any) -> None:
    owner = Membership.objects.get(user=tenant.owner)

    response = login(tenant.owner).post(reverse("member_remove", args=[owner.pk]), follow=True)

    assert "An organisation needs at least one owner" in response.content.decode()
    assert Membership.objects.filter(pk=owner.pk, role="owner").exists()


def test_removed_member_loses_access(tenant: Tenant, login: Any) -> None:
    member = Membership.objects.get(user=tenant.member)
    member_http = HttpClient()
    member_http.force_login(tenant.member)
    assert member_http.get(reverse("client_detail", args=[tenant.client_a.pk])).status_code == 200

    login(tenant.owner).post(reverse("member_remove", args=[member.pk]))

    assert member_http.get(reverse("client_detail", args=[tenant.client_a.pk])).status_code == 403
    assert member_http.get(reverse("client_list")).status_code == 403


def test_removed_member_of_two_organisations_gets_404_for_the_old_ones_objects(tenant: Tenant, login: Any) -> None:
    other = MembershipFactory(user=tenant.member, role="owner")
    ClientFactory(organisation=other.organisation, name="Delta Dairy")
    member_http = HttpClient()
    member_http.force_login(tenant.member)

    login(tenant.owner).post(
        reverse("member_remove", args=[Membership.objects.get(user=tenant.member, organisation=tenant.organisation).pk])
    )

    assert member_http.get(reverse("client_detail", args=[tenant.client_a.pk])).status_code == 404
    html = member_http.get(reverse("client_list")).content.decode()
    assert "Delta Dairy" in html
    assert "Alpha Bakery" not in html


def test_admin_withdraws_an_invitation(tenant: Tenant, login: Any, invited: str) -> None:
    response = login(tenant.admin).post(reverse("invitation_revoke", args=[Invitation.objects.get().pk]), follow=True)

    assert "The invitation to new@acme.example was withdrawn." in response.content.decode()
    assert not Invitation.objects.exists()


def test_accepted_invitation_cannot_be_withdrawn(tenant: Tenant, client: HttpClient, login: Any, invited: str) -> None:
    client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    invitation = Invitation.objects.get()

    response = login(tenant.owner).post(reverse("invitation_revoke", args=[invitation.pk]))

    assert response.status_code == 404
    assert Invitation.objects.filter(pk=invitation.pk).exists()


def test_invitation_used_while_the_signup_form_was_open_creates_no_login(
    tenant: Tenant, client: HttpClient, invited: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the link was valid when the page loaded, and someone accepted it since
    stale = Invitation.objects.get()
    Invitation.objects.filter(pk=stale.pk).update(accepted_at=datetime.now(tz=UTC))
    monkeypatch.setattr("accounts.views.services.load_invitation", lambda token: stale)

    # when the form is sent
    response = client.post(invited, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    # then nobody is logged in and no orphan login is left behind
    assert response.status_code == 410
    assert not User.objects.filter(email="new@acme.example").exists()
    assert "_auth_user_id" not in client.session


def test_members_page_queries_do_not_grow_with_the_members(tenant: Tenant, login: Any) -> None:
    http = login(tenant.owner)
    with CaptureQueriesContext(connection) as few:
        http.get(reverse("member_list"))
    for _ in range(5):
        MembershipFactory(organisation=tenant.organisation, role="member")
        MembershipFactory(organisation=tenant.organisation, role="client_user", client=tenant.client_b)

    with CaptureQueriesContext(connection) as many:
        response = http.get(reverse("member_list"))

    assert response.content.decode().count('value="client_user"') == 4 + 10 + 1  # role forms + invite form
    assert len(many.captured_queries) == len(few.captured_queries)


def test_role_form_offers_the_organisations_clients(tenant: Tenant, login: Any) -> None:
    ClientFactory(name="Foreign client")

    html = login(tenant.owner).get(reverse("member_list")).content.decode()

    client_user = Membership.objects.get(user=tenant.client_user)
    assert f'<option value="{tenant.client_a.pk}" selected>Alpha Bakery</option>' in html
    assert "Beta Cars" in html
    assert "Foreign client" not in html
    assert f'name="m{client_user.pk}-client"' in html


def test_a_new_invitation_replaces_the_open_one_for_the_same_address(
    tenant, django_capture_on_commit_callbacks
) -> None:
    from accounts import services as account_services
    from accounts.models import Invitation

    with django_capture_on_commit_callbacks(execute=True):
        first = account_services.invite_member(tenant.organisation, "new@acme.example", "member", None, tenant.owner)
        second = account_services.invite_member(tenant.organisation, "NEW@acme.example", "admin", None, tenant.owner)

    assert list(Invitation.objects.filter(email="new@acme.example")) == [second]
    assert not Invitation.objects.filter(pk=first.pk).exists()


def test_an_unknown_time_zone_is_refused_with_a_message(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).post(
        reverse("organisation_settings"), {"name": "Acme", "billing_email": "", "time_zone": "Mars/Olympus"}
    )

    assert response.status_code == 400
    assert "Mars/Olympus" in response.content.decode()
    tenant.organisation.refresh_from_db()
    assert tenant.organisation.time_zone == "Europe/Berlin"
