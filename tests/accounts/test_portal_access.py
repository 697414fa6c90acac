"""Who may do what in the portal: every login-only URL against every persona.

The rules (issue): the owner can, a client-user sees only its client, an outsider from another
organisation gets 404, an under-privileged member gets 403. Roles and permissions are one table
(``accounts.constants.ROLE_PERMS``); these tests pin what that table means page by page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.middleware import SESSION_KEY
from accounts.models import (
    ApiKey,
    Client,
    Invitation,
    Membership,
    Organisation,
    SenderAddress,
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
)

ROLES = ("owner", "admin", "member", "client_user")
ALL = frozenset(ROLES)
STAFF = frozenset({"owner", "admin", "member"})  # everybody but client-users
MANAGERS = frozenset({"owner", "admin"})
OWNERS = frozenset({"owner"})


@dataclass
class World:
    """The ``tenant`` fixture plus API keys, an open invitation and a second organisation."""

    t: Tenant
    key_a: ApiKey
    key_b: ApiKey
    invitation: Invitation
    outsider: User
    other_org: Organisation
    other_client: Client
    other_account: SendingAccount

    def membership(self, user: User) -> Membership:
        return Membership.objects.get(user=user, organisation=self.t.organisation)


def room_for_one_more_account(organisation: Organisation) -> None:
    """The tenant has three sending accounts; creating a fourth needs three Additional-account add-ons
    (the gating itself is tested in tests/deliverability/test_account_gating.py)."""
    from datetime import timedelta

    from plans.models import AddOnProduct, AddOnSubscription

    product = AddOnProduct.objects.get(kind=AddOnProduct.Kind.ADDITIONAL_ACCOUNT)
    now = timezone.now()
    existing = SendingAccount.objects.filter(organisation=organisation).count()
    for i in range(existing):
        AddOnSubscription.objects.create(
            organisation=organisation,
            product=product,
            domain=f"account{i}.example",
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=364),
        )


@pytest.fixture
def world(tenant: Tenant, outsider: User) -> World:
    other_org = outsider.memberships.get().organisation
    room_for_one_more_account(tenant.organisation)
    return World(
        t=tenant,
        key_a=ApiKeyFactory(sending_account=tenant.account_a, name="Alpha key"),
        key_b=ApiKeyFactory(sending_account=tenant.account_b, name="Beta key"),
        invitation=Invitation.objects.create(
            organisation=tenant.organisation, email="new@acme.example", role="member", nonce="n" * 32
        ),
        outsider=outsider,
        other_org=other_org,
        other_client=ClientFactory(organisation=other_org, name="Other client"),
        other_account=SendingAccount.objects.get(organisation=other_org),
    )


def _as(login: Callable[[User], HttpClient], world: World, role: str) -> HttpClient:
    return login(getattr(world.t, role))


# --- the URL table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A GET page; ``target`` picks the object in the URL (always one the client-user may see)."""

    name: str
    roles: frozenset[str]
    target: Callable[[World], Any] | None = None

    def url(self, world: World) -> str:
        return reverse(self.name, args=[self.target(world).pk] if self.target else [])


PAGES = [
    Page("dashboard", ALL),
    Page("organisation_settings", ALL),
    Page("member_list", STAFF),
    Page("client_list", ALL),
    Page("client_create", MANAGERS),
    Page("client_detail", ALL, lambda w: w.t.client_a),
    Page("client_edit", MANAGERS, lambda w: w.t.client_a),
    Page("account_list", ALL),
    Page("account_create", MANAGERS),
    Page("account_detail", ALL, lambda w: w.t.account_a),
    Page("account_edit", MANAGERS, lambda w: w.t.account_a),
    Page("sender_list", ALL),
    Page("sender_create", ALL),
    Page("api_key_list", ALL),
    Page("api_key_create", MANAGERS),
]


@dataclass(frozen=True)
class Action:
    """A POST; ``done`` tells whether its effect happened."""

    name: str
    roles: frozenset[str]
    target: Callable[[World], Any] | None
    data: Callable[[World], dict[str, Any]]
    done: Callable[[World], bool]

    def url(self, world: World) -> str:
        return reverse(self.name, args=[self.target(world).pk] if self.target else [])


def _role_of(world: World, user: User) -> str:
    return world.membership(user).role


ACTIONS = [
    Action(
        "organisation_settings",
        MANAGERS,
        None,
        lambda w: {"name": "Acme Renamed", "billing_email": "billing@acme.example", "time_zone": "America/New_York"},
        lambda w: Organisation.objects.filter(
            pk=w.t.organisation.pk, name="Acme Renamed", time_zone="America/New_York"
        ).exists(),
    ),
    Action(
        "member_invite",
        MANAGERS,
        None,
        lambda w: {"email": "friend@acme.example", "role": "member"},
        lambda w: Invitation.objects.filter(email="friend@acme.example", organisation=w.t.organisation).exists(),
    ),
    Action(
        "member_change_role",
        OWNERS,
        lambda w: w.membership(w.t.member),
        lambda w: {f"m{w.membership(w.t.member).pk}-role": "admin"},
        lambda w: _role_of(w, w.t.member) == "admin",
    ),
    Action(
        "member_remove",
        OWNERS,
        lambda w: w.membership(w.t.member),
        lambda w: {},
        lambda w: not Membership.objects.filter(user=w.t.member).exists(),
    ),
    Action(
        "invitation_revoke",
        MANAGERS,
        lambda w: w.invitation,
        lambda w: {},
        lambda w: not Invitation.objects.filter(pk=w.invitation.pk).exists(),
    ),
    Action(
        "client_create",
        MANAGERS,
        None,
        lambda w: {"name": "Gamma Gym", "contact_email": "", "notes": "", "is_active": "on"},
        lambda w: Client.objects.filter(organisation=w.t.organisation, name="Gamma Gym").exists(),
    ),
    Action(
        "client_edit",
        MANAGERS,
        lambda w: w.t.client_a,
        lambda w: {"name": "Alpha Patisserie", "contact_email": "", "notes": "", "is_active": "on"},
        lambda w: Client.objects.filter(pk=w.t.client_a.pk, name="Alpha Patisserie").exists(),
    ),
    Action(
        "account_create",
        MANAGERS,
        None,
        lambda w: {"name": "Gamma account", "client": w.t.client_a.pk},
        lambda w: SendingAccount.objects.filter(name="Gamma account", client=w.t.client_a).exists(),
    ),
    Action(
        "account_edit",
        MANAGERS,
        lambda w: w.t.account_a,
        lambda w: {"name": "Alpha renamed", "client": w.t.client_a.pk},
        lambda w: SendingAccount.objects.filter(pk=w.t.account_a.pk, name="Alpha renamed").exists(),
    ),
    Action(
        "sender_create",
        ALL,
        None,
        lambda w: {"sending_account": w.t.account_a.pk, "email": "hello@alpha.example", "display_name": "Alpha"},
        lambda w: SenderAddress.objects.filter(sending_account=w.t.account_a, email="hello@alpha.example").exists(),
    ),
    Action(
        "sender_resend",
        ALL,
        lambda w: w.t.sender_a,
        lambda w: {},
        lambda w: w.t.sender_a.verification_emails.exists(),
    ),
    Action(
        "sender_delete",
        ALL,
        lambda w: w.t.sender_a,
        lambda w: {},
        lambda w: not SenderAddress.objects.filter(pk=w.t.sender_a.pk).exists(),
    ),
    Action(
        "api_key_create",
        MANAGERS,
        None,
        lambda w: {"sending_account": w.t.account_a.pk, "name": "Gamma key"},
        lambda w: ApiKey.objects.filter(sending_account=w.t.account_a, name="Gamma key").exists(),
    ),
    Action(
        "api_key_revoke",
        MANAGERS,
        lambda w: w.key_a,
        lambda w: {},
        lambda w: ApiKey.objects.get(pk=w.key_a.pk).revoked_at is not None,
    ),
]


def _grid(items: list[Any], allowed: bool) -> list[Any]:
    return [
        pytest.param(item, role, id=f"{item.name}-{role}")
        for item in items
        for role in ROLES
        if (role in item.roles) is allowed
    ]


# --- anonymous ----------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_anonymous_page_redirects_to_login(world: World, client: HttpClient, page: Page) -> None:
    response = client.get(page.url(world))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=")


@pytest.mark.parametrize(
    "action",
    [*ACTIONS, Action("switch_organisation", ALL, lambda w: w.t.organisation, lambda w: {}, lambda w: False)],
    ids=lambda a: a.name,
)
def test_anonymous_post_redirects_to_login_and_changes_nothing(
    world: World, client: HttpClient, action: Action
) -> None:
    response = client.post(action.url(world), action.data(world))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=")
    assert not action.done(world)


def test_user_without_membership_gets_the_no_organisation_page(world: World, login: Any) -> None:
    stranger = User.objects.create_user(email="nobody@example.com", password="x")

    response = login(stranger).get(reverse("client_list"))

    assert response.status_code == 403
    assert "You are not a member of any organisation yet" in response.content.decode()


# --- roles: pages -------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "role"), _grid(PAGES, allowed=True))
def test_role_may_open_page(world: World, login: Any, page: Page, role: str) -> None:
    response = _as(login, world, role).get(page.url(world))

    assert response.status_code == 200


@pytest.mark.parametrize(("page", "role"), _grid(PAGES, allowed=False))
def test_role_gets_403_for_page(world: World, login: Any, page: Page, role: str) -> None:
    response = _as(login, world, role).get(page.url(world))

    assert response.status_code == 403


# --- roles: actions -----------------------------------------------------------------------


@pytest.mark.parametrize(("action", "role"), _grid(ACTIONS, allowed=True))
def test_role_may_perform_action(
    world: World, login: Any, django_capture_on_commit_callbacks: Any, action: Action, role: str
) -> None:
    assert not action.done(world)

    with django_capture_on_commit_callbacks(execute=True):
        response = _as(login, world, role).post(action.url(world), action.data(world))

    assert response.status_code in (200, 302), response.content.decode()[:2000]
    assert action.done(world)


@pytest.mark.parametrize(("action", "role"), _grid(ACTIONS, allowed=False))
def test_role_gets_403_for_action_and_nothing_changes(world: World, login: Any, action: Action, role: str) -> None:
    response = _as(login, world, role).post(action.url(world), action.data(world))

    assert response.status_code == 403
    assert not action.done(world)


def test_new_client_belongs_to_the_organisation_and_its_page_follows(world: World, login: Any) -> None:
    response = login(world.t.owner).post(reverse("client_create"), {"name": "Gamma Gym", "is_active": "on"})

    client = Client.objects.get(name="Gamma Gym")
    assert client.organisation == world.t.organisation
    assert response["Location"] == reverse("client_detail", args=[client.pk])


def test_api_key_created_page_shows_the_raw_key(world: World, login: Any) -> None:
    response = login(world.t.owner).post(
        reverse("api_key_create"), {"sending_account": world.t.account_a.pk, "name": "Gamma key"}
    )

    key = ApiKey.objects.get(name="Gamma key")
    html = response.content.decode()
    assert f"xes_{key.prefix}_" in html
    assert key.created_by == world.t.owner


def test_edit_pages_answer_403_to_a_client_user_whether_or_not_the_object_is_its_own(world: World, login: Any) -> None:
    """No existence oracle: the role check comes before the object lookup."""
    http = login(world.t.client_user)

    statuses = {
        http.get(reverse("client_edit", args=[world.t.client_a.pk])).status_code,
        http.get(reverse("client_edit", args=[world.t.client_b.pk])).status_code,
        http.get(reverse("client_edit", args=[world.other_client.pk])).status_code,
        http.get(reverse("client_edit", args=[999_999])).status_code,
    }

    assert statuses == {403}


# --- switching organisation ---------------------------------------------------------------


def test_switch_organisation_to_one_of_the_users_own(world: World, login: Any) -> None:
    MembershipFactory(user=world.t.owner, organisation=world.other_org, role="member")
    http = login(world.t.owner)

    response = http.post(reverse("switch_organisation", args=[world.other_org.pk]))

    assert response.status_code == 302
    assert http.session[SESSION_KEY] == world.other_org.pk
    assert "Other account" in http.get(reverse("account_list")).content.decode()


def test_switch_organisation_needs_post(world: World, login: Any) -> None:
    response = login(world.t.owner).get(reverse("switch_organisation", args=[world.t.organisation.pk]))

    assert response.status_code == 405


# --- the client-user sees only its client -------------------------------------------------

# (page, what the client-user must see, what only the rest of the organisation may see)
SCOPED_LISTS = [
    ("client_list", ["Alpha Bakery"], ["Beta Cars"]),
    ("account_list", ["Alpha account"], ["Beta account", "Acme main"]),
    ("sender_list", ["news@alpha.example"], ["news@beta.example"]),
    ("api_key_list", ["Alpha key"], ["Beta key"]),
    ("dashboard", ["news@alpha.example"], ["news@beta.example", "Beta account"]),
    ("sender_create", ["Alpha account"], ["Beta account", "Acme main"]),
]


@pytest.mark.parametrize(("name", "own", "others"), SCOPED_LISTS, ids=[s[0] for s in SCOPED_LISTS])
def test_client_user_sees_only_its_clients_rows(
    world: World, login: Any, name: str, own: list[str], others: list[str]
) -> None:
    html = login(world.t.client_user).get(reverse(name)).content.decode()

    for text in own:
        assert text in html
    for text in others:
        assert text not in html


@pytest.mark.parametrize(("name", "own", "others"), SCOPED_LISTS, ids=[s[0] for s in SCOPED_LISTS])
def test_owner_sees_every_clients_rows(world: World, login: Any, name: str, own: list[str], others: list[str]) -> None:
    html = login(world.t.owner).get(reverse(name)).content.decode()

    for text in [*own, *others]:
        assert text in html
    assert "Other account" not in html
    assert "Other client" not in html


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("client_detail", lambda w: w.t.client_b),
        ("account_detail", lambda w: w.t.account_b),
        ("account_detail", lambda w: w.t.account_org),
    ],
    ids=["client_detail-b", "account_detail-b", "account_detail-org"],
)
def test_client_user_gets_404_for_pages_of_other_clients(
    world: World, login: Any, name: str, target: Callable[[World], Any]
) -> None:
    response = login(world.t.client_user).get(reverse(name, args=[target(world).pk]))

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("name", "unchanged"),
    [
        ("sender_resend", lambda w: not w.t.sender_b.verification_emails.exists()),
        ("sender_delete", lambda w: SenderAddress.objects.filter(pk=w.t.sender_b.pk).exists()),
    ],
    ids=["sender_resend", "sender_delete"],
)
def test_client_user_gets_404_for_actions_on_other_clients_senders(
    world: World, login: Any, name: str, unchanged: Callable[[World], bool]
) -> None:
    response = login(world.t.client_user).post(reverse(name, args=[world.t.sender_b.pk]))

    assert response.status_code == 404
    assert unchanged(world)


def test_client_detail_lists_only_that_clients_accounts(world: World, login: Any) -> None:
    html = login(world.t.owner).get(reverse("client_detail", args=[world.t.client_a.pk])).content.decode()

    assert "Alpha account" in html
    assert "Beta account" not in html


def test_account_detail_lists_its_senders_and_keys(world: World, login: Any) -> None:
    html = login(world.t.client_user).get(reverse("account_detail", args=[world.t.account_a.pk])).content.decode()

    assert "news@alpha.example" in html
    assert "Alpha key" in html
    assert "news@beta.example" not in html
    assert "Beta key" not in html


# --- the outsider gets 404 ----------------------------------------------------------------

OUTSIDER_GETS = [
    ("client_detail", lambda w: w.t.client_a),
    ("client_edit", lambda w: w.t.client_a),
    ("account_detail", lambda w: w.t.account_a),
    ("account_edit", lambda w: w.t.account_a),
]


@pytest.mark.parametrize(("name", "target"), OUTSIDER_GETS, ids=[g[0] for g in OUTSIDER_GETS])
def test_outsider_gets_404_for_pages_of_another_organisation(
    world: World, login: Any, name: str, target: Callable[[World], Any]
) -> None:
    response = login(world.outsider).get(reverse(name, args=[target(world).pk]))

    assert response.status_code == 404


OUTSIDER_POSTS = [
    *(a for a in ACTIONS if a.target is not None),
    Action(
        "switch_organisation",
        ALL,
        lambda w: w.t.organisation,
        lambda w: {},
        lambda w: False,
    ),
]


@pytest.mark.parametrize("action", OUTSIDER_POSTS, ids=lambda a: a.name)
def test_outsider_gets_404_for_actions_on_another_organisation(world: World, login: Any, action: Action) -> None:
    http = login(world.outsider)

    response = http.post(action.url(world), action.data(world))

    assert response.status_code == 404
    assert not action.done(world)
    assert http.session.get(SESSION_KEY) is None


def test_outsider_sees_none_of_the_organisations_rows(world: World, login: Any) -> None:
    http = login(world.outsider)

    html = "".join(
        http.get(reverse(name)).content.decode()
        for name in ("client_list", "account_list", "sender_list", "api_key_list", "member_list", "dashboard")
    )

    for text in ("Alpha", "Beta", "Acme", "owner@acme.example", "new@acme.example"):
        assert text not in html


# --- form choices are scoped to the tenant ------------------------------------------------


def test_sender_form_offers_a_client_user_only_its_clients_accounts(world: World, login: Any) -> None:
    response = login(world.t.client_user).get(reverse("sender_create"))

    choices = list(response.context["form"].fields["sending_account"].queryset)
    assert choices == [world.t.account_a]


def test_sender_form_offers_the_owner_all_and_only_the_organisations_accounts(world: World, login: Any) -> None:
    response = login(world.t.owner).get(reverse("sender_create"))

    choices = set(response.context["form"].fields["sending_account"].queryset)
    assert choices == {world.t.account_org, world.t.account_a, world.t.account_b}


@pytest.mark.parametrize(
    ("role", "account"),
    [
        ("client_user", lambda w: w.t.account_b),
        ("client_user", lambda w: w.t.account_org),
        ("owner", lambda w: w.other_account),
    ],
    ids=["client_user-other-client", "client_user-organisation", "owner-other-organisation"],
)
def test_sender_form_rejects_an_account_out_of_scope(
    world: World, login: Any, role: str, account: Callable[[World], SendingAccount]
) -> None:
    response = _as(login, world, role).post(
        reverse("sender_create"), {"sending_account": account(world).pk, "email": "x@evil.example"}
    )

    assert response.status_code == 400
    assert response.context["form"].errors["sending_account"]
    assert not SenderAddress.objects.filter(email="x@evil.example").exists()


def test_api_key_form_rejects_another_organisations_account(world: World, login: Any) -> None:
    response = login(world.t.owner).post(
        reverse("api_key_create"), {"sending_account": world.other_account.pk, "name": "Sneaky"}
    )

    assert response.status_code == 400
    assert response.context["form"].errors["sending_account"]
    assert not ApiKey.objects.filter(name="Sneaky").exists()


def test_sending_account_form_offers_only_the_organisations_clients(world: World, login: Any) -> None:
    response = login(world.t.admin).get(reverse("account_create"))

    choices = set(response.context["form"].fields["client"].queryset)
    assert choices == {world.t.client_a, world.t.client_b}


def test_sending_account_form_rejects_another_organisations_client(world: World, login: Any) -> None:
    response = login(world.t.owner).post(
        reverse("account_create"), {"name": "Sneaky account", "client": world.other_client.pk}
    )

    assert response.status_code == 400
    assert response.context["form"].errors["client"]
    assert not SendingAccount.objects.filter(name="Sneaky account").exists()


def test_sending_account_edit_cannot_move_it_to_another_organisations_client(world: World, login: Any) -> None:
    response = login(world.t.owner).post(
        reverse("account_edit", args=[world.t.account_a.pk]), {"name": "Alpha account", "client": world.other_client.pk}
    )

    assert response.status_code == 400
    world.t.account_a.refresh_from_db()
    assert world.t.account_a.client == world.t.client_a


def test_invite_form_rejects_another_organisations_client(world: World, login: Any) -> None:
    response = login(world.t.owner).post(
        reverse("member_invite"), {"email": "spy@acme.example", "role": "client_user", "client": world.other_client.pk}
    )

    assert response.status_code == 400
    assert response.context["invite_form"].errors["client"]
    assert not Invitation.objects.filter(email="spy@acme.example").exists()


def test_role_form_rejects_another_organisations_client(world: World, login: Any) -> None:
    member = world.membership(world.t.member)

    response = login(world.t.owner).post(
        reverse("member_change_role", args=[member.pk]),
        {f"m{member.pk}-role": "client_user", f"m{member.pk}-client": world.other_client.pk},
        follow=True,
    )

    assert "Select a valid choice" in response.content.decode()
    member.refresh_from_db()
    assert (member.role, member.client) == ("member", None)


def test_client_name_clash_is_checked_only_within_the_organisation(world: World, login: Any) -> None:
    """Another organisation's client name is no secret oracle and no obstacle."""
    response = login(world.t.owner).post(reverse("client_create"), {"name": "Other client", "is_active": "on"})

    assert response.status_code == 302
    assert Client.objects.filter(organisation=world.t.organisation, name="Other client").exists()


def test_sender_resend_of_a_verified_address_is_refused_with_a_message(world: World, login: Any) -> None:
    sender = SenderAddressFactory(sending_account=world.t.account_a, verified_at=timezone.now())

    response = login(world.t.owner).post(reverse("sender_resend", args=[sender.pk]), follow=True)

    assert "already verified" in response.content.decode()
    assert not sender.verification_emails.exists()


# --- list pages cost the same for many rows -----------------------------------------------


@pytest.mark.parametrize(
    "name", ["dashboard", "client_list", "account_list", "sender_list", "api_key_list", "member_list"]
)
def test_list_page_queries_do_not_grow_with_the_rows(
    world: World, login: Any, django_assert_max_num_queries: Any, name: str
) -> None:
    http = login(world.t.owner)
    with CaptureQueriesContext(connection) as few:
        http.get(reverse(name))
    for _ in range(5):
        client = ClientFactory(organisation=world.t.organisation)
        account = SendingAccountFactory(organisation=world.t.organisation, client=client)
        SenderAddressFactory(sending_account=account, verified_at=timezone.now())
        ApiKeyFactory(sending_account=account, created_by=world.t.admin)
        MembershipFactory(organisation=world.t.organisation, role="member")

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = http.get(reverse(name))

    assert response.status_code == 200


def test_the_new_account_form_preselects_the_client_from_the_client_page(tenant, login) -> None:
    room_for_one_more_account(tenant.organisation)
    http = login(tenant.owner)
    detail = http.get(f"/clients/{tenant.client_b.pk}/").content.decode()
    assert f"/sending-accounts/new/?client={tenant.client_b.pk}" in detail

    form = http.get(f"/sending-accounts/new/?client={tenant.client_b.pk}").content.decode()
    assert f'<option value="{tenant.client_b.pk}" selected>' in form


def test_the_only_account_is_preselected_when_adding_a_sender(outsider, login) -> None:
    from accounts.models import SendingAccount

    only = SendingAccount.objects.get(organisation__memberships__user=outsider)
    form = login(outsider).get("/senders/new/").content.decode()
    assert f'<option value="{only.pk}" selected>' in form
