"""The scheduled evaluation with frozen time and real counters: event streams cross each threshold,
the minimum-volume rule opens reviews, probation ends after 7 clean days, a third probation within
90 days suspends, and every change is recorded, announced and e-mailed."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Membership, SendingAccount
from deliverability.reputation.models import Alarm, ReputationState, StandingChange, Thresholds
from deliverability.reputation.services import rate_factor
from deliverability.signals import standing_changed
from tests.conftest import Tenant
from tests.deliverability.reputation.helpers import day, evaluate_at, standing, traffic

pytestmark = pytest.mark.django_db
Standing = SendingAccount.Standing


@pytest.fixture
def announced() -> Any:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append({k: kwargs[k] for k in ("sending_account_id", "old", "new", "reason")})

    standing_changed.connect(receiver, weak=False)
    yield received
    standing_changed.disconnect(receiver)


def changes(account: SendingAccount) -> list[tuple[str, str]]:
    return [(c.old, c.new) for c in StandingChange.objects.filter(sending_account=account).order_by("at", "pk")]


# --- crossing the thresholds --------------------------------------------------------------------


def test_bounces_just_below_the_warning_level_change_nothing(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=19)  # 1.9%

    evaluate_at(day(0, 13))

    assert standing(tenant.account_a) == Standing.GOOD
    assert not StandingChange.objects.exists()


def test_two_percent_bounces_warn_and_tell_the_owners(
    tenant: Tenant, mailoutbox: list[Any], announced: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    traffic(tenant.account_a, day(0), sent=1000, hard=20)  # 2%
    # when
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_at(day(0, 13))
    # then
    assert standing(tenant.account_a) == Standing.WARNING
    change = StandingChange.objects.get(sending_account=tenant.account_a)
    assert (change.old, change.new, change.kind, change.by) == ("good", "warning", "automatic", None)
    assert "2%" in change.reason
    assert "20 hard bounces of 1,000" in change.reason
    assert announced == [
        {"sending_account_id": tenant.account_a.pk, "old": "good", "new": "warning", "reason": change.reason}
    ]
    owners = set(
        Membership.objects.filter(organisation=tenant.organisation, role="owner").values_list("user__email", flat=True)
    )
    assert {m.to[0] for m in mailoutbox} == owners
    message = mailoutbox[0]
    assert "Alpha account" in message.subject
    assert "Warning" in message.subject
    assert "20 hard bounces of 1,000" in message.body
    assert f"/deliverability/accounts/{tenant.account_a.pk}/reputation/" in message.body
    html = message.alternatives[0][0]
    assert "20 hard bounces of 1,000" in html
    assert f"/accounts/{tenant.account_a.pk}/reputation/" in html


def test_four_percent_bounces_put_the_account_on_probation_with_an_alarm(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=40)

    evaluate_at(day(0, 13))

    assert standing(tenant.account_a) == Standing.PROBATION
    alarm = Alarm.objects.get(kind=Alarm.Kind.PROBATION, sending_account=tenant.account_a)
    assert alarm.is_open
    assert "4%" in alarm.message
    assert rate_factor(tenant.account_a) == 0.5
    assert rate_factor(tenant.account_b) == 1.0


def test_eight_percent_bounces_suspend_at_once(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=80)

    evaluate_at(day(0, 13))

    assert changes(tenant.account_a) == [("good", "suspended")]
    assert Alarm.objects.filter(kind=Alarm.Kind.SUSPENSION, sending_account=tenant.account_a).exists()


@pytest.mark.parametrize(
    ("complaints", "expected"),
    [(3, Standing.GOOD), (4, Standing.WARNING), (5, Standing.PROBATION), (15, Standing.SUSPENDED)],
)
def test_complaint_rates_cross_each_level(tenant: Tenant, complaints: int, expected: str) -> None:
    traffic(tenant.account_a, day(0), sent=5000, complaints=complaints)  # 0.06 / 0.08 / 0.1 / 0.3 %

    evaluate_at(day(0, 13))

    assert standing(tenant.account_a) == expected


def test_the_window_is_seven_days(tenant: Tenant) -> None:
    # given: the bad day is 7 days old at the second evaluation
    traffic(tenant.account_a, day(0), sent=1000, hard=25)
    evaluate_at(day(6, 23))
    assert standing(tenant.account_a) == Standing.WARNING
    # when
    evaluate_at(day(7, 0))
    # then
    assert changes(tenant.account_a) == [("good", "warning"), ("warning", "good")]


def test_rising_rates_escalate_step_by_step(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=20)
    evaluate_at(day(0, 13))
    traffic(tenant.account_a, day(1), sent=1000, hard=70)  # 4.5% over both days
    evaluate_at(day(1, 13))
    traffic(tenant.account_a, day(2), sent=1000, hard=200)  # 9.7% over three days
    evaluate_at(day(2, 13))

    assert changes(tenant.account_a) == [("good", "warning"), ("warning", "probation"), ("probation", "suspended")]


def test_an_evaluation_without_news_changes_nothing(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=40)
    evaluate_at(day(0, 13))
    evaluate_at(day(0, 14))
    evaluate_at(day(1, 14))

    assert changes(tenant.account_a) == [("good", "probation")]
    assert Alarm.objects.filter(kind=Alarm.Kind.PROBATION).count() == 1


def test_edited_thresholds_apply(tenant: Tenant) -> None:
    Thresholds.objects.filter(pk=1).update(warning_bounce_rate=1)
    traffic(tenant.account_a, day(0), sent=1000, hard=10)

    evaluate_at(day(0, 13))

    assert standing(tenant.account_a) == Standing.WARNING


# --- few deliveries -------------------------------------------------------------------------------


def test_below_500_deliveries_rates_change_no_standing(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=300, hard=24, complaints=2)  # 8% bounces, 0.7% complaints

    evaluate_at(day(0, 13))

    assert standing(tenant.account_a) == Standing.GOOD
    assert not Alarm.objects.exists()


@pytest.mark.parametrize(("hard", "complaints"), [(25, 0), (0, 3)])
def test_few_deliveries_with_enough_trouble_open_a_review_not_a_level(
    tenant: Tenant, hard: int, complaints: int
) -> None:
    traffic(tenant.account_a, day(0), sent=300, hard=hard, complaints=complaints)

    evaluate_at(day(0, 13))
    evaluate_at(day(0, 14))

    assert standing(tenant.account_a) == Standing.GOOD
    review = Alarm.objects.get(kind=Alarm.Kind.REVIEW, sending_account=tenant.account_a)
    assert review.is_open
    assert "please review" in review.message


def test_a_closed_review_reopens_only_on_new_trouble(tenant: Tenant, staff_user: Any) -> None:
    from deliverability.reputation.services import resolve_alarm

    traffic(tenant.account_a, day(0), sent=300, complaints=3)
    evaluate_at(day(0, 13))
    resolve_alarm(Alarm.objects.get(kind=Alarm.Kind.REVIEW), by=staff_user, note="Spoke to the customer.")

    evaluate_at(day(0, 14))
    assert not Alarm.objects.filter(resolved_at__isnull=True).exists()

    traffic(tenant.account_a, day(0, 15), sent=10, complaints=1)
    evaluate_at(day(0, 16))
    assert Alarm.objects.filter(kind=Alarm.Kind.REVIEW, resolved_at__isnull=True).count() == 1


# --- the end of a probation -----------------------------------------------------------------------


def probation_on_day_0(account: SendingAccount) -> None:
    traffic(account, day(0, 10), sent=1000, hard=45)
    evaluate_at(day(0, 12))
    assert standing(account) == Standing.PROBATION


def test_probation_ends_after_seven_clean_days(tenant: Tenant) -> None:
    # given
    probation_on_day_0(tenant.account_a)
    # when: clean transactional mail every day, evaluated every day
    for n in range(1, 8):
        traffic(tenant.account_a, day(n, 9), sent=300)
        evaluate_at(
            day(
                n,
                11,
            )
        )
        if n < 7:
            assert standing(tenant.account_a) == Standing.PROBATION, f"ended on day {n}"
    # then
    evaluate_at(day(7, 12))
    assert changes(tenant.account_a) == [("good", "probation"), ("probation", "good")]
    last = StandingChange.objects.filter(sending_account=tenant.account_a).latest("at")
    assert "7 days in a row below the warning levels" in last.reason
    assert Alarm.objects.get(kind=Alarm.Kind.PROBATION).resolved_at is not None


def test_a_day_at_the_warning_level_restarts_the_clean_days(tenant: Tenant) -> None:
    probation_on_day_0(tenant.account_a)
    for n in range(1, 12):
        # day 3 brings one complaint: 0.11% of the mail since the probation began (900 deliveries)
        traffic(tenant.account_a, day(n, 9), sent=300, complaints=1 if n == 3 else 0)
        evaluate_at(day(n, 13))
        if n < 11:
            assert standing(tenant.account_a) == Standing.PROBATION, f"ended on day {n}"
    # days 3 and 4 were at the warning level or above; days 5 to 11 are clean
    assert standing(tenant.account_a) == Standing.GOOD


def test_probation_without_any_mail_ends_after_seven_days(tenant: Tenant) -> None:
    probation_on_day_0(tenant.account_a)

    evaluate_at(day(6, 23))
    assert standing(tenant.account_a) == Standing.PROBATION
    evaluate_at(day(7, 12))
    assert standing(tenant.account_a) == Standing.GOOD


def test_a_suspension_is_never_lifted_automatically(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=100)
    evaluate_at(day(0, 13))

    for n in range(1, 40, 3):
        evaluate_at(day(n))

    assert changes(tenant.account_a) == [("good", "suspended")]


# --- repeated probations --------------------------------------------------------------------------


def probation_and_back(account: SendingAccount, start: int) -> None:
    """A bad burst on day ``start``, probation, then 7 days without mail: good again."""
    traffic(account, day(start, 10), sent=1000, hard=45)
    evaluate_at(day(start, 12))
    assert standing(account) == Standing.PROBATION
    evaluate_at(day(start + 7, 12))
    assert standing(account) == Standing.GOOD


def test_a_third_probation_within_90_days_suspends(tenant: Tenant) -> None:
    probation_and_back(tenant.account_a, 0)
    probation_and_back(tenant.account_a, 20)

    traffic(tenant.account_a, day(89, 10), sent=1000, hard=45)
    evaluate_at(day(89, 12))

    assert standing(tenant.account_a) == Standing.SUSPENDED
    last = StandingChange.objects.filter(sending_account=tenant.account_a).latest("at")
    assert (last.old, last.new, last.figures["why"]) == ("good", "suspended", "repeat")
    assert "within 90 days" in last.reason


def test_a_third_probation_after_90_days_is_a_probation(tenant: Tenant) -> None:
    probation_and_back(tenant.account_a, 0)
    probation_and_back(tenant.account_a, 20)

    traffic(tenant.account_a, day(91, 10), sent=1000, hard=45)
    evaluate_at(day(91, 12))

    assert standing(tenant.account_a) == Standing.PROBATION


# --- the platform ---------------------------------------------------------------------------------


def test_platform_rates_near_the_ses_review_level_raise_the_alarm_and_clear_it(tenant: Tenant) -> None:
    # given: each account alone stays below probation; all together reach 4% bounces
    traffic(tenant.account_a, day(0), sent=1000, hard=39)
    traffic(tenant.account_b, day(0), sent=1000, hard=39)
    traffic(tenant.account_org, day(0), sent=100, hard=6)
    # when
    evaluate_at(day(0, 13))
    # then
    alarm = Alarm.objects.get(kind=Alarm.Kind.PLATFORM)
    assert alarm.sending_account is None
    assert alarm.is_open
    assert "4%" in alarm.message
    # and: a week later the window is clean again
    evaluate_at(day(8))
    alarm.refresh_from_db()
    assert not alarm.is_open


def test_the_evaluation_keeps_the_window_figures_for_the_admin(tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=1000, hard=30, complaints=1)

    evaluate_at(day(0, 13))

    state = ReputationState.objects.get(sending_account=tenant.account_a)
    assert (state.sent, state.delivered, state.hard_bounces, state.complaints) == (1000, 970, 30, 1)
    assert str(state.bounce_rate) == "3.000"
