"""Who may get which plan: STARTER follows the cloud e-media flag, BASIC is free once for new cross-media
customers (12 months from registration), CUSTOM plans are made by the XES team only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import django_rq
import pytest
import time_machine
from django.db import IntegrityError, transaction
from rq import SimpleWorker

from accounts.models import Organisation, User
from accounts.services import ServiceError
from accounts.signals import organisation_flags_changed
from plans import jobs, services
from plans.models import CreditEntry, Order, Plan, Subscription
from tests.conftest import Tenant
from tests.factories import OrganisationFactory
from tests.plans.conftest import T0, balances, grant, utc

Code = services.CreditRefused.Code


def cloud(organisation: Organisation, on: bool = True) -> Organisation:
    organisation.is_cloud_emedia_customer = on
    organisation.save(update_fields=["is_cloud_emedia_customer"])
    return organisation


def starter_terms(organisation: Organisation) -> list[Subscription]:
    return list(Subscription.objects.filter(organisation=organisation, plan__code="STARTER").order_by("starts_at"))


# --- STARTER ---------------------------------------------------------------------------------


def test_a_cloud_emedia_customer_gets_starter(tenant: Tenant) -> None:
    org = cloud(tenant.organisation)

    term = services.sync_starter(org, at=T0)

    assert term is not None
    assert (term.plan.code, term.origin, term.included_emails) == ("STARTER", "starter", 500_000)
    assert (term.starts_at, term.ends_at) == (T0, utc(2027, 3, 1, 9, 0))
    assert balances(term) == (500_000, 0, 0)
    assert services.sync_starter(org, at=T0 + timedelta(days=30)) == term  # idempotent
    assert len(starter_terms(org)) == 1


def test_without_the_flag_there_is_no_starter(tenant: Tenant) -> None:
    assert services.sync_starter(tenant.organisation, at=T0) is None
    assert starter_terms(tenant.organisation) == []


def test_starter_cannot_be_ordered(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    cloud(tenant.organisation)

    reason = services.plan_eligibility(tenant.organisation, plan("STARTER"))

    assert reason == "STARTER is included automatically for cloud e-media customers and cannot be ordered."
    with pytest.raises(ServiceError):
        services.order_plan(tenant.organisation, plan("STARTER"), tenant.owner)


def test_the_daily_job_renews_starter_without_a_gap(tenant: Tenant) -> None:
    # given STARTER from 2026-03-01 09:00 until 2027-03-01 09:00
    org = cloud(tenant.organisation)
    first = services.sync_starter(org, at=T0)
    assert first is not None

    # when the daily job runs: four days before the end nothing happens, within three days it renews
    with time_machine.travel(utc(2027, 2, 25, 3, 15), tick=False):
        assert jobs.sync_starters_job() == 0
    assert len(starter_terms(org)) == 1
    with time_machine.travel(utc(2027, 2, 27, 3, 15), tick=False):
        assert jobs.sync_starters_job() == 1
        assert jobs.sync_starters_job() == 0  # once only

    # then the next term starts exactly when the first ends
    first_again, second = starter_terms(org)
    assert first_again == first
    assert (second.starts_at, second.ends_at) == (first.ends_at, utc(2028, 3, 1, 9, 0))
    assert services.pool(org, first.ends_at - timedelta(microseconds=1)).terms == [first]
    assert services.pool(org, first.ends_at).terms == [second]
    r = services.reserve(org, 10, at=first.ends_at)
    assert r.parts.get().subscription == second

    # and the first term's rest expires: no rollover
    services.expire_due_terms(at=first.ends_at)
    assert balances(first) == (0, 0, 0)
    assert balances(second) == (499_990, 10, 0)


def test_a_missed_renewal_still_follows_without_a_gap(tenant: Tenant) -> None:
    org = cloud(tenant.organisation)
    first = services.sync_starter(org, at=T0)
    assert first is not None

    second = services.sync_starter(org, at=first.ends_at + timedelta(days=1))

    assert second is not None
    assert second.starts_at == first.ends_at


def test_after_a_long_break_starter_starts_anew(tenant: Tenant) -> None:
    org = cloud(tenant.organisation)
    first = services.sync_starter(org, at=T0)
    assert first is not None

    later = first.ends_at + timedelta(days=10)
    second = services.sync_starter(org, at=later)

    assert second is not None
    assert (second.starts_at, second.ends_at) == (later, services.term_end(later))


def test_starter_ends_when_cloud_emedia_stops_and_the_rest_expires(tenant: Tenant) -> None:
    # given a STARTER term with some use and its renewal already queued
    org = cloud(tenant.organisation)
    first = services.sync_starter(org, at=T0)
    assert first is not None
    services.consume(services.reserve(org, 100_000, at=utc(2026, 6, 1)), 100_000, at=utc(2026, 6, 1))
    services.sync_starter(org, at=utc(2027, 2, 28))
    queued = starter_terms(org)[1]
    stop = utc(2027, 2, 28, 12)

    # when the flag is cleared
    assert services.sync_starter(cloud(org, on=False), at=stop) is None

    # then both terms end at once and what was left expires
    first.refresh_from_db()
    queued.refresh_from_db()
    assert (first.ends_at, first.ended_early_at, first.expired_at) == (stop, stop, stop)
    assert (queued.ended_early_at, queued.expired_at) == (stop, stop)
    assert queued.ends_at == queued.starts_at + timedelta(seconds=1)
    assert balances(first) == (0, 0, 100_000)
    assert balances(queued) == (0, 0, 0)
    assert CreditEntry.objects.get(subscription=first, kind="expire").emails == 400_000
    assert CreditEntry.objects.get(subscription=queued, kind="expire").emails == 500_000
    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(org, 1, at=stop)
    assert refused.value.code == Code.NO_PLAN
    assert services.rebuild_balances(org) == []


def test_ending_starter_keeps_other_plans_and_other_organisations(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    org = cloud(tenant.organisation)
    standard = grant(org, plan("STANDARD"), T0)
    services.sync_starter(org, at=T0)
    other = cloud(OrganisationFactory())
    other_starter = services.sync_starter(other, at=T0)
    assert other_starter is not None

    services.sync_starter(cloud(org, on=False), at=utc(2026, 5, 1))

    assert services.pool(org, utc(2026, 5, 1)).terms == [standard]
    other_starter.refresh_from_db()
    assert other_starter.expired_at is None


def test_starter_comes_back_with_a_fresh_term_when_the_flag_is_set_again(tenant: Tenant) -> None:
    org = cloud(tenant.organisation)
    services.sync_starter(org, at=T0)
    services.sync_starter(cloud(org, on=False), at=utc(2026, 5, 1))

    again = services.sync_starter(cloud(org), at=utc(2026, 5, 2))

    assert again is not None
    assert (again.starts_at, again.included_emails) == (utc(2026, 5, 2), 500_000)


def test_the_daily_job_ends_starter_for_former_customers(tenant: Tenant) -> None:
    org = cloud(tenant.organisation)
    services.sync_starter(org, at=T0)
    cloud(org, on=False)  # changed without the signal

    assert services.sync_all_starters(at=utc(2026, 4, 1)) == 1

    assert services.pool(org, utc(2026, 4, 1)).terms == []


def test_reservations_made_before_starter_ended_can_still_be_settled(tenant: Tenant) -> None:
    org = cloud(tenant.organisation)
    term = services.sync_starter(org, at=T0)
    assert term is not None
    r = services.reserve(org, 1_000, at=T0)
    services.sync_starter(cloud(org, on=False), at=utc(2026, 4, 1))

    services.consume(r, 600, at=utc(2026, 4, 1, 1))
    services.release(r, at=utc(2026, 4, 1, 2))

    assert balances(term) == (0, 0, 600)
    assert services.rebuild_balances(org) == []


def test_the_flag_signal_enqueues_the_starter_job_run_by_a_worker(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    org = tenant.organisation
    queue = django_rq.get_queue("default")

    # when the accounts app says the flags changed (inside a transaction: enqueued on commit)
    with django_capture_on_commit_callbacks(execute=True):
        cloud(org)
        organisation_flags_changed.send(sender=Organisation, organisation=org)

    # then one job waits on the queue ...
    assert queue.count == 1
    job = queue.jobs[0]
    assert (job.func_name, job.args) == ("plans.jobs.sync_starter_job", (org.pk,))

    # ... and a worker applies it
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert queue.count == 0
    (term,) = starter_terms(org)
    assert term.is_active()

    # and the same way back when the flag is cleared
    with django_capture_on_commit_callbacks(execute=True):
        cloud(org, on=False)
        organisation_flags_changed.send(sender=Organisation, organisation=org)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    term.refresh_from_db()
    assert term.ended_early_at is not None
    assert services.pool(org).terms == []


def test_nothing_is_enqueued_when_the_transaction_rolls_back(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    queue = django_rq.get_queue("default")

    def changed_then_failed() -> None:
        with transaction.atomic():
            organisation_flags_changed.send(sender=Organisation, organisation=tenant.organisation)
            raise RuntimeError("rolled back")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        changed_then_failed()

    assert callbacks == []

    assert queue.count == 0


def test_the_job_ignores_a_deleted_organisation(db: None) -> None:
    jobs.sync_starter_job(987_654)  # no error


# --- BASIC -----------------------------------------------------------------------------------


@pytest.fixture
def newcomer(tenant: Tenant) -> Tenant:
    """A cross-media customer registered on 2026-01-15 that never had a plan."""
    tenant.organisation.has_cross_media_configuration = True
    tenant.organisation.created_at = utc(2026, 1, 15, 8, 0)
    tenant.organisation.save()
    return tenant


def test_basic_is_offered_to_a_new_cross_media_customer(newcomer: Tenant, plan: Callable[[str], Plan]) -> None:
    assert services.plan_eligibility(newcomer.organisation, plan("BASIC"), at=utc(2026, 2, 1)) is None


def test_basic_needs_a_cross_media_configuration(newcomer: Tenant, plan: Callable[[str], Plan]) -> None:
    newcomer.organisation.has_cross_media_configuration = False

    reason = services.plan_eligibility(newcomer.organisation, plan("BASIC"), at=utc(2026, 2, 1))

    assert reason == "BASIC is only for customers with an XMPie cross-media configuration."


@pytest.mark.parametrize("other", ["STANDARD", "STARTER"])
def test_basic_is_only_for_customers_who_never_had_a_plan(
    newcomer: Tenant, plan: Callable[[str], Plan], other: str
) -> None:
    grant(newcomer.organisation, plan(other), utc(2026, 1, 20))

    reason = services.plan_eligibility(newcomer.organisation, plan("BASIC"), at=utc(2026, 2, 1))

    assert reason == "BASIC is only for new customers who never had an XES plan, and cannot be renewed."


def test_basic_runs_twelve_months_from_registration(
    newcomer: Tenant, plan: Callable[[str], Plan], staff_user: User
) -> None:
    # given an order placed in June
    with time_machine.travel(utc(2026, 6, 10), tick=False):
        order = services.order_plan(newcomer.organisation, plan("BASIC"), newcomer.owner)

    # when the XES team approves it
    term = services.approve_order(order, by=staff_user, at=utc(2026, 6, 11))

    # then the term runs from registration, not from the order
    assert isinstance(term, Subscription)
    assert (term.starts_at, term.ends_at) == (utc(2026, 1, 15, 8, 0), utc(2027, 1, 15, 8, 0))
    assert (term.plan.code, term.included_emails, term.order) == ("BASIC", 200_000, order)
    assert term.plan.annual_fee == 0
    assert term.plan.free_first_year
    assert balances(term) == (200_000, 0, 0)
    order.refresh_from_db()
    assert order.status == Order.Status.APPROVED


def test_basic_from_a_leap_day_registration_ends_on_28_february(newcomer: Tenant, plan: Callable[[str], Plan]) -> None:
    newcomer.organisation.created_at = utc(2028, 2, 29, 10, 0)
    newcomer.organisation.save()

    term = grant(newcomer.organisation, plan("BASIC"), utc(2028, 3, 1))

    assert (term.starts_at, term.ends_at) == (utc(2028, 2, 29, 10, 0), utc(2029, 2, 28, 10, 0))


def test_basic_is_refused_once_the_registration_year_is_over(newcomer: Tenant, plan: Callable[[str], Plan]) -> None:
    basic = plan("BASIC")
    last_moment = utc(2027, 1, 15, 7, 59, 59)

    assert services.plan_eligibility(newcomer.organisation, basic, at=last_moment) is None
    reason = services.plan_eligibility(newcomer.organisation, basic, at=utc(2027, 1, 15, 8, 0))
    assert reason == "BASIC is valid for 12 months from registration, and that time is over."
    with pytest.raises(ServiceError, match="12 months from registration"):
        grant(newcomer.organisation, basic, utc(2027, 1, 15, 8, 0))
    with time_machine.travel(utc(2027, 2, 1), tick=False), pytest.raises(ServiceError, match="12 months"):
        services.order_plan(newcomer.organisation, basic, newcomer.owner)


def test_a_late_approval_of_basic_is_refused_and_the_order_stays_pending(
    newcomer: Tenant, plan: Callable[[str], Plan], staff_user: User
) -> None:
    with time_machine.travel(utc(2027, 1, 10), tick=False):
        order = services.order_plan(newcomer.organisation, plan("BASIC"), newcomer.owner)

    with pytest.raises(ServiceError, match="12 months from registration"):
        services.approve_order(order, by=staff_user, at=utc(2027, 1, 20))

    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not Subscription.objects.filter(organisation=newcomer.organisation).exists()


def test_basic_approval_is_refused_when_a_plan_came_in_between(
    newcomer: Tenant, plan: Callable[[str], Plan], staff_user: User
) -> None:
    with time_machine.travel(utc(2026, 2, 1), tick=False):
        order = services.order_plan(newcomer.organisation, plan("BASIC"), newcomer.owner)
    grant(newcomer.organisation, plan("STANDARD"), utc(2026, 2, 2))

    with pytest.raises(ServiceError, match="never had an XES plan"):
        services.approve_order(order, by=staff_user, at=utc(2026, 2, 3))

    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


def test_basic_cannot_be_had_twice_nor_renewed(newcomer: Tenant, plan: Callable[[str], Plan], staff_user: User) -> None:
    basic = plan("BASIC")
    with time_machine.travel(utc(2026, 2, 1), tick=False):
        order = services.order_plan(newcomer.organisation, basic, newcomer.owner)
        # a second order while the first waits
        assert "never had an XES plan" in (services.plan_eligibility(newcomer.organisation, basic) or "")
    term = services.approve_order(order, by=staff_user, at=utc(2026, 2, 2))

    # during and after the term
    assert not basic.renewable
    for at in (utc(2026, 6, 1), term.ends_at + timedelta(days=1)):
        assert services.plan_eligibility(newcomer.organisation, basic, at=at) == (
            "BASIC is only for new customers who never had an XES plan, and cannot be renewed."
        )


def test_a_rejected_basic_order_may_be_placed_again(
    newcomer: Tenant, plan: Callable[[str], Plan], staff_user: User
) -> None:
    with time_machine.travel(utc(2026, 2, 1), tick=False):
        order = services.order_plan(newcomer.organisation, plan("BASIC"), newcomer.owner)
        services.reject_order(order, by=staff_user, reason="Configuration not active yet")

        assert services.plan_eligibility(newcomer.organisation, plan("BASIC")) is None


def test_a_catalogue_plan_can_be_ordered_once_at_a_time(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    standard = plan("STANDARD")
    assert services.plan_eligibility(tenant.organisation, standard) is None

    services.order_plan(tenant.organisation, standard, tenant.owner)

    assert services.plan_eligibility(tenant.organisation, standard) == (
        "You already ordered this plan; the XES team will confirm it shortly."
    )


def test_an_approved_order_renews_a_running_plan_without_overlap(
    tenant: Tenant, plan: Callable[[str], Plan], staff_user: User
) -> None:
    running = grant(tenant.organisation, plan("STANDARD"), utc(2026, 1, 1))
    order = services.order_plan(tenant.organisation, plan("STANDARD"), tenant.owner)

    renewal = services.approve_order(order, by=staff_user, at=utc(2026, 11, 1))

    assert (renewal.starts_at, renewal.ends_at) == (running.ends_at, utc(2028, 1, 1))


# --- CUSTOM ----------------------------------------------------------------------------------


def custom_plan(organisation: Organisation | None, emails: int, code: str = "custom-acme") -> Plan:
    return Plan.objects.create(
        code=code,
        name="Acme custom",
        emails_per_year=emails,
        price_per_1000="1.90",
        eligibility=Plan.Eligibility.CUSTOM,
        organisation=organisation,
        orderable=False,
    )


def test_custom_plans_are_made_by_the_xes_team_only(tenant: Tenant) -> None:
    custom = custom_plan(tenant.organisation, 40_000_000)

    reason = services.plan_eligibility(tenant.organisation, custom)

    assert reason is not None
    assert reason.startswith("Custom plans are arranged by the XES team.")
    with pytest.raises(ServiceError, match="arranged by the XES team"):
        services.order_plan(tenant.organisation, custom, tenant.owner)
    term = services.grant_plan(tenant.organisation, custom, origin=Subscription.Origin.XES_TEAM, at=T0)
    assert (term.included_emails, term.price_per_1000) == (40_000_000, custom.price_per_1000)


def test_a_custom_plan_serves_only_its_organisation(tenant: Tenant) -> None:
    custom = custom_plan(tenant.organisation, 40_000_000)

    with pytest.raises(ServiceError, match="another organisation"):
        services.grant_plan(OrganisationFactory(), custom, origin=Subscription.Origin.XES_TEAM, at=T0)


@pytest.mark.parametrize("emails", [30_000_000, 200_000])
def test_the_database_refuses_custom_plans_up_to_30_million(tenant: Tenant, emails: int) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        custom_plan(tenant.organisation, emails)


def test_the_database_refuses_a_custom_plan_without_organisation(db: None) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        custom_plan(None, 40_000_000)


def test_the_database_refuses_an_organisation_on_a_catalogue_plan(tenant: Tenant) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.create(
            code="std-acme",
            name="Standard for Acme",
            emails_per_year=1_000_000,
            price_per_1000="6.00",
            eligibility=Plan.Eligibility.ANY,
            organisation=tenant.organisation,
        )


def test_the_smallest_custom_plan_is_just_above_30_million(tenant: Tenant) -> None:
    assert custom_plan(tenant.organisation, 30_000_001).is_custom


def test_any_plan_marked_not_renewable_is_offered_once(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    trial = small_plan(5_000, "9.00", code="trial")
    trial.renewable = False
    trial.save()
    assert services.plan_eligibility(tenant.organisation, trial) is None

    grant(tenant.organisation, trial, T0)

    assert services.plan_eligibility(tenant.organisation, trial) == "This plan cannot be renewed."
