"""The suppression list per sending account: the services the sending engine and the event
handlers use, the portal page (search, filter, add, remove) and the account page's panels."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.services import ServiceError
from deliverability import suppressions
from deliverability.models import DnsRecord, Domain, Suppression
from tests.conftest import Tenant
from tests.factories import SendingAccountFactory

Reason = Suppression.Reason
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _list(account) -> str:
    return reverse("deliverability:suppression_list", args=[account.pk])


def _add(account) -> str:
    return reverse("deliverability:suppression_add", args=[account.pk])


def _remove(account, entry: Suppression) -> str:
    return reverse("deliverability:suppression_remove", args=[account.pk, entry.pk])


# --- services -----------------------------------------------------------------------------


def test_suppress_stores_the_address_normalised(tenant: Tenant) -> None:
    entry = suppressions.suppress(tenant.account_a, "  Ann@Bücher.EXAMPLE ", Reason.HARD_BOUNCE)

    assert entry.email == "Ann@xn--bcher-kva.example"
    assert entry.reason == Reason.HARD_BOUNCE


def test_suppress_refuses_what_is_not_an_address(tenant: Tenant) -> None:
    with pytest.raises(ValidationError):
        suppressions.suppress(tenant.account_a, "not an address", Reason.MANUAL)
    assert not Suppression.objects.exists()


def test_suppress_is_idempotent_and_ignores_case(tenant: Tenant) -> None:
    first = suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.UNSUBSCRIBE)
    again = suppressions.suppress(tenant.account_a, "ANN@Alpha.example", Reason.UNSUBSCRIBE)

    assert again.pk == first.pk
    assert Suppression.objects.count() == 1


def test_a_complaint_replaces_a_weaker_reason_but_keeps_the_date(tenant: Tenant) -> None:
    with time_machine.travel(T0, tick=False):
        first = suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.MANUAL, note="phoned")
    with time_machine.travel(datetime(2026, 3, 5, tzinfo=UTC), tick=False):
        upgraded = suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.COMPLAINT)

    upgraded.refresh_from_db()
    assert upgraded.pk == first.pk
    assert upgraded.reason == Reason.COMPLAINT
    assert upgraded.created_at == T0
    assert upgraded.note == "phoned"


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (Reason.COMPLAINT, Reason.UNSUBSCRIBE),
        (Reason.HARD_BOUNCE, Reason.MANUAL),
        (Reason.HARD_BOUNCE, Reason.COMPLAINT),
        (Reason.UNSUBSCRIBE, Reason.MANUAL),
    ],
)
def test_a_first_reason_stays_unless_the_new_one_is_stronger(tenant: Tenant, first: str, then: str) -> None:
    suppressions.suppress(tenant.account_a, "ann@alpha.example", first)

    entry = suppressions.suppress(tenant.account_a, "ann@alpha.example", then)

    entry.refresh_from_db()
    assert entry.reason == first


def test_suppressions_are_per_account(tenant: Tenant) -> None:
    suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.COMPLAINT)

    assert suppressions.is_suppressed(tenant.account_a, "ann@alpha.example")
    assert suppressions.is_suppressed(tenant.account_a, "ANN@ALPHA.EXAMPLE")
    assert not suppressions.is_suppressed(tenant.account_b, "ann@alpha.example")
    assert not suppressions.is_suppressed(tenant.account_a, "bob@alpha.example")


def test_suppressed_set_answers_a_batch_in_one_query(tenant: Tenant, django_assert_num_queries) -> None:
    suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.COMPLAINT)
    suppressions.suppress(tenant.account_a, "jo@bücher.example", Reason.HARD_BOUNCE)
    suppressions.suppress(tenant.account_b, "bob@alpha.example", Reason.COMPLAINT)
    batch = ["Ann@alpha.example", "bob@alpha.example", "jo@BÜCHER.example", "kim@alpha.example", "garbage"]

    with django_assert_num_queries(1):
        found = suppressions.suppressed_set(tenant.account_a, batch)

    assert found == {"Ann@alpha.example", "jo@BÜCHER.example"}


def test_suppressed_set_of_nothing_asks_nothing(tenant: Tenant, django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        assert suppressions.suppressed_set(tenant.account_a, []) == set()


def test_unsuppress_removes_a_manual_entry(tenant: Tenant) -> None:
    entry = suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.MANUAL)

    suppressions.unsuppress(entry, by=tenant.owner)

    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("reason", "why"),
    [(Reason.HARD_BOUNCE, "does not exist"), (Reason.COMPLAINT, "as spam"), (Reason.UNSUBSCRIBE, "unsubscribed")],
)
def test_unsuppress_refuses_what_the_recipient_side_decided(tenant: Tenant, reason: str, why: str) -> None:
    entry = suppressions.suppress(tenant.account_a, "ann@alpha.example", reason)

    with pytest.raises(ServiceError, match=why):
        suppressions.unsuppress(entry, by=tenant.owner)

    assert Suppression.objects.filter(pk=entry.pk).exists()


def test_add_manual_says_since_when_an_address_is_already_suppressed(tenant: Tenant) -> None:
    with time_machine.travel(T0, tick=False):
        suppressions.suppress(tenant.account_a, "ann@alpha.example", Reason.HARD_BOUNCE)

    with pytest.raises(ValidationError) as caught:
        suppressions.add_manual(tenant.account_a, "ANN@alpha.example")

    assert caught.value.messages == ["ann@alpha.example is already suppressed since March 1, 2026 (Hard bounce)."]


# --- the page -----------------------------------------------------------------------------


@pytest.fixture
def listed(tenant: Tenant) -> dict[str, Suppression]:
    account = tenant.account_a
    return {
        "manual": suppressions.suppress(account, "phoned@alpha.example", Reason.MANUAL, note="asked by phone"),
        "bounce": suppressions.suppress(account, "gone@alpha.example", Reason.HARD_BOUNCE),
        "complaint": suppressions.suppress(account, "angry@other.example", Reason.COMPLAINT),
        "unsub": suppressions.suppress(account, "bye@Alpha.example", Reason.UNSUBSCRIBE),
        "elsewhere": suppressions.suppress(tenant.account_b, "beta@alpha.example", Reason.MANUAL),
    }


def _shown(response) -> set[str]:
    return {entry.email for entry in response.context["page"]}


def test_everybody_who_sees_the_account_sees_its_list(tenant: Tenant, listed, login) -> None:
    for user in (tenant.owner, tenant.member, tenant.client_user):
        response = login(user).get(_list(tenant.account_a))
        assert response.status_code == 200
        assert _shown(response) == {
            "phoned@alpha.example",
            "gone@alpha.example",
            "angry@other.example",
            "bye@alpha.example",
        }


def test_search_is_a_substring_of_the_address_in_any_case(tenant: Tenant, listed, login) -> None:
    response = login(tenant.owner).get(_list(tenant.account_a), {"q": "ALPHA.ex"})

    assert _shown(response) == {"phoned@alpha.example", "gone@alpha.example", "bye@alpha.example"}


def test_the_list_filters_by_reason(tenant: Tenant, listed, login) -> None:
    response = login(tenant.owner).get(_list(tenant.account_a), {"reason": "hard_bounce", "q": ""})

    assert _shown(response) == {"gone@alpha.example"}


def test_a_search_without_results_says_so(tenant: Tenant, listed, login) -> None:
    response = login(tenant.owner).get(_list(tenant.account_a), {"q": "nobody"})

    assert "No suppressed address matches your search." in response.content.decode()


def test_an_htmx_search_answers_with_the_results_only(tenant: Tenant, listed, login) -> None:
    response = login(tenant.owner).get(_list(tenant.account_a), {"q": "gone"}, headers={"HX-Request": "true"})

    page = response.content.decode()
    assert page.lstrip().startswith('<div id="suppression-results"')
    assert "gone@alpha.example" in page
    assert "phoned@alpha.example" not in page
    assert "<html" not in page


def test_the_list_is_paginated(tenant: Tenant, login) -> None:
    for i in range(60):
        suppressions.suppress(tenant.account_a, f"user{i:02}@alpha.example", Reason.UNSUBSCRIBE)
    http = login(tenant.owner)

    first = http.get(_list(tenant.account_a))
    second = http.get(_list(tenant.account_a), {"page": 2})

    assert len(_shown(first)) == 50
    assert len(_shown(second)) == 10
    assert _shown(first).isdisjoint(_shown(second))
    assert "Page 1 of 2" in first.content.decode()


def test_the_list_page_costs_the_same_for_many_rows(tenant: Tenant, login, django_assert_max_num_queries) -> None:
    http = login(tenant.owner)
    for i in range(3):
        suppressions.suppress(tenant.account_a, f"few{i}@alpha.example", Reason.MANUAL, by=tenant.owner)
    with django_assert_max_num_queries(12) as few:
        assert http.get(_list(tenant.account_a)).status_code == 200
    for i in range(40):
        suppressions.suppress(tenant.account_a, f"many{i}@alpha.example", Reason.MANUAL, by=tenant.admin)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert http.get(_list(tenant.account_a)).status_code == 200


def test_only_manual_entries_offer_removal_and_the_others_say_why(tenant: Tenant, listed, login) -> None:
    page = login(tenant.owner).get(_list(tenant.account_a)).content.decode()

    assert _remove(tenant.account_a, listed["manual"]) in page
    assert _remove(tenant.account_a, listed["bounce"]) not in page
    assert "Why can't it be removed?" in page
    assert "marked your e-mail as spam" in page


def test_members_see_no_remove_button(tenant: Tenant, listed, login) -> None:
    page = login(tenant.member).get(_list(tenant.account_a)).content.decode()

    assert _remove(tenant.account_a, listed["manual"]) not in page
    assert 'data-testid="suppression-add"' in page


def test_an_outsider_gets_404_everywhere(tenant: Tenant, listed, outsider, login) -> None:
    http = login(outsider)
    account = tenant.account_a

    assert http.get(_list(account)).status_code == 404
    assert http.post(_add(account), {"email": "x@alpha.example"}).status_code == 404
    assert http.post(_remove(account, listed["manual"])).status_code == 404
    for panel in ("account_domains_panel", "account_standing_panel", "account_suppressions_panel"):
        assert http.get(reverse(f"deliverability:{panel}", args=[account.pk])).status_code == 404
    assert Suppression.objects.filter(pk=listed["manual"].pk).exists()
    assert not Suppression.objects.filter(email="x@alpha.example").exists()


def test_a_client_user_gets_404_for_another_clients_account(tenant: Tenant, listed, login) -> None:
    http = login(tenant.client_user)  # bound to client A
    account = tenant.account_b

    assert http.get(_list(account)).status_code == 404
    assert http.post(_add(account), {"email": "x@beta.example"}).status_code == 404
    for panel in ("account_domains_panel", "account_standing_panel", "account_suppressions_panel"):
        assert http.get(reverse(f"deliverability:{panel}", args=[account.pk])).status_code == 404
    assert not Suppression.objects.filter(email="x@beta.example").exists()


def test_an_entry_of_another_account_cannot_be_reached_through_this_one(tenant: Tenant, listed, login) -> None:
    response = login(tenant.owner).post(_remove(tenant.account_a, listed["elsewhere"]))

    assert response.status_code == 404
    assert Suppression.objects.filter(pk=listed["elsewhere"].pk).exists()


# --- adding -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "member", "client_user"])
def test_an_address_is_added_by_hand(tenant: Tenant, login, role: str) -> None:
    user = getattr(tenant, role)

    response = login(user).post(_add(tenant.account_a), {"email": " Kim@Alpha.EXAMPLE ", "note": "phoned"})

    assert response.status_code == 302
    entry = Suppression.objects.get(sending_account=tenant.account_a)
    assert (entry.email, entry.reason, entry.note, entry.created_by) == (
        "Kim@alpha.example",
        Reason.MANUAL,
        "phoned",
        user,
    )


def test_an_invalid_address_is_refused_clearly(tenant: Tenant, login) -> None:
    response = login(tenant.owner).post(_add(tenant.account_a), {"email": "kim at alpha"})

    assert response.status_code == 400
    assert response.context["add_form"].errors["email"] == ["Enter a valid e-mail address, like name@example.com."]
    assert not Suppression.objects.exists()


def test_a_duplicate_says_since_when(tenant: Tenant, login) -> None:
    with time_machine.travel(T0, tick=False):
        suppressions.suppress(tenant.account_a, "kim@alpha.example", Reason.UNSUBSCRIBE)

    response = login(tenant.owner).post(_add(tenant.account_a), {"email": "KIM@alpha.example"})

    assert response.status_code == 400
    assert response.context["add_form"].errors["email"] == [
        "kim@alpha.example is already suppressed since March 1, 2026 (Unsubscribed)."
    ]
    assert Suppression.objects.get().reason == Reason.UNSUBSCRIBE


# --- removing -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_a_manager_removes_a_manual_entry(tenant: Tenant, listed, login, role: str) -> None:
    response = login(getattr(tenant, role)).post(_remove(tenant.account_a, listed["manual"]), follow=True)

    assert not Suppression.objects.filter(pk=listed["manual"].pk).exists()
    assert "may mail it again" in response.content.decode()


@pytest.mark.parametrize("kind", ["bounce", "complaint", "unsub"])
def test_removing_what_the_recipient_side_decided_is_refused_with_why(tenant: Tenant, listed, login, kind) -> None:
    response = login(tenant.owner).post(_remove(tenant.account_a, listed[kind]), follow=True)

    assert Suppression.objects.filter(pk=listed[kind].pk).exists()
    assert "stays on the list" in response.content.decode()


@pytest.mark.parametrize("role", ["member", "client_user"])
def test_a_role_without_the_permission_cannot_remove(tenant: Tenant, listed, login, role: str) -> None:
    response = login(getattr(tenant, role)).post(_remove(tenant.account_a, listed["manual"]))

    assert response.status_code == 403
    assert Suppression.objects.filter(pk=listed["manual"].pk).exists()


def test_removal_needs_post(tenant: Tenant, listed, login) -> None:
    assert login(tenant.owner).get(_remove(tenant.account_a, listed["manual"])).status_code == 405


# --- the account page's panels ------------------------------------------------------------


def test_the_account_page_loads_the_deliverability_panels(tenant: Tenant, login) -> None:
    page = login(tenant.owner).get(reverse("account_detail", args=[tenant.account_a.pk])).content.decode()

    for panel in ("account_domains_panel", "account_standing_panel", "account_suppressions_panel"):
        assert f'hx-get="{reverse(f"deliverability:{panel}", args=[tenant.account_a.pk])}"' in page


def test_the_domains_panel_summarises_each_domains_records(tenant: Tenant, login) -> None:
    domain = Domain.objects.create(sending_account=tenant.account_a, name="alpha.example", verification_token="t1")
    Domain.objects.create(sending_account=tenant.account_b, name="beta.example", verification_token="t2")
    for i, status in enumerate(["ok", "warning", "missing", "pending"]):
        DnsRecord.objects.create(
            domain=domain, kind="dkim", name=f"s{i}._domainkey", rtype="CNAME", value="x", status=status
        )

    response = login(tenant.owner).get(reverse("deliverability:account_domains_panel", args=[tenant.account_a.pk]))

    page = response.content.decode()
    assert "alpha.example" in page
    assert "beta.example" not in page
    assert "2 of 4 records correct" in page
    assert "1 needs fixing" in page
    assert "Not verified yet" in page
    assert reverse("deliverability:domain_detail", args=[domain.pk]) in page
    assert f"{reverse('deliverability:domain_create')}?account={tenant.account_a.pk}" in page


def test_the_standing_panel_says_what_the_standing_means(tenant: Tenant, login) -> None:
    tenant.account_a.standing = "probation"
    tenant.account_a.save()

    page = (
        login(tenant.owner)
        .get(reverse("deliverability:account_standing_panel", args=[tenant.account_a.pk]))
        .content.decode()
    )

    assert "Probation" in page
    assert "promotional e-mail is paused" in page
    assert reverse("deliverability:dedicated_ip", args=[tenant.account_a.pk]) in page


def test_the_suppressions_panel_counts_by_reason(tenant: Tenant, listed, login) -> None:
    page = (
        login(tenant.owner)
        .get(reverse("deliverability:account_suppressions_panel", args=[tenant.account_a.pk]))
        .content.decode()
    )

    assert "This account never sends to 4 addresses." in page
    assert "Hard bounce: 1" in page
    assert "beta@alpha.example" not in page


# --- admin --------------------------------------------------------------------------------


def test_the_team_finds_and_removes_any_suppression(tenant: Tenant, listed, staff_user, client) -> None:
    client.force_login(staff_user)

    found = client.get(reverse("admin:deliverability_suppression_changelist"), {"q": "gone@"})
    removed = client.post(
        reverse("admin:deliverability_suppression_delete", args=[listed["bounce"].pk]), {"post": "yes"}
    )

    assert found.status_code == 200
    assert "gone@alpha.example" in found.content.decode()
    assert "angry@other.example" not in found.content.decode()
    assert removed.status_code == 302
    assert not Suppression.objects.filter(pk=listed["bounce"].pk).exists()


def test_the_team_adds_a_suppression_in_the_admin(tenant: Tenant, staff_user, client) -> None:
    client.force_login(staff_user)
    account = SendingAccountFactory(organisation=tenant.organisation, name="Gamma")

    response = client.post(
        reverse("admin:deliverability_suppression_add"),
        {"sending_account": account.pk, "email": "x@gamma.example", "reason": "manual", "note": ""},
    )

    assert response.status_code == 302
    assert Suppression.objects.get(sending_account=account).created_by == staff_user
