"""The rules as pure functions: levels at their exact thresholds, the minimum-volume rule, windows
with a baseline, and the automatic moves of the state machine."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from accounts.models import SendingAccount
from deliverability.reputation.models import Thresholds
from deliverability.reputation.rules import Baseline, Counts, Verdict, assess, next_standing, window_counts

Standing = SendingAccount.Standing
T = Thresholds()  # the defaults of PRODUCT.md, unsaved


def bounces(hard: int, sent: int = 10_000) -> Counts:
    return Counts(sent=sent, delivered=sent - hard, hard_bounces=hard)


def complaints(n: int, delivered: int = 10_000) -> Counts:
    return Counts(sent=delivered, delivered=delivered, complaints=n)


@pytest.mark.parametrize(
    ("counts", "level"),
    [
        (bounces(199), Standing.GOOD),  # 1.99%
        (bounces(200), Standing.WARNING),  # 2%
        (bounces(399), Standing.WARNING),
        (bounces(400), Standing.PROBATION),  # 4%
        (bounces(799), Standing.PROBATION),
        (bounces(800), Standing.SUSPENDED),  # 8%
        (complaints(7), Standing.GOOD),  # 0.07%
        (complaints(8), Standing.WARNING),  # 0.08%
        (complaints(10), Standing.PROBATION),  # 0.1%
        (complaints(29), Standing.PROBATION),
        (complaints(30), Standing.SUSPENDED),  # 0.3%
    ],
)
def test_levels_start_exactly_at_their_thresholds(counts: Counts, level: str) -> None:
    assert assess(counts, T).level == level


def test_the_stricter_of_the_two_rates_decides() -> None:
    verdict = assess(Counts(sent=10_000, delivered=9_800, hard_bounces=200, complaints=30), T)

    assert (verdict.bounce_level, verdict.complaint_level, verdict.level) == (
        Standing.WARNING,
        Standing.SUSPENDED,
        Standing.SUSPENDED,
    )


def test_complaints_are_measured_against_deliveries_and_bounces_against_sends() -> None:
    counts = Counts(sent=1000, delivered=500, hard_bounces=40, soft_bounces=460, complaints=1)

    assert counts.bounce_rate == 4
    assert counts.complaint_rate == Decimal("0.2")


def test_lost_send_events_do_not_inflate_the_bounce_rate() -> None:
    assert Counts(sent=0, delivered=960, hard_bounces=40).bounce_rate == 4


def test_rates_do_not_apply_below_500_deliveries() -> None:
    verdict = assess(Counts(sent=499, delivered=449, hard_bounces=24, complaints=2), T)

    assert verdict.rates_apply is False
    assert verdict.level == Standing.GOOD
    assert verdict.review is False


@pytest.mark.parametrize("counts", [Counts(sent=100, delivered=97, complaints=3), Counts(sent=100, hard_bounces=25)])
def test_three_complaints_or_25_hard_bounces_open_a_review_without_a_level(counts: Counts) -> None:
    verdict = assess(counts, T)

    assert verdict.review is True
    assert verdict.level is None
    assert not verdict.clean


def test_at_500_deliveries_the_rates_apply() -> None:
    verdict = assess(Counts(sent=500, delivered=500, complaints=3), T)

    assert verdict.rates_apply is True
    assert verdict.level == Standing.SUSPENDED  # 0.6%
    assert verdict.review is False


def test_a_window_is_the_last_days_and_starts_at_a_baseline() -> None:
    today = date(2026, 3, 10)
    by_day = {today - timedelta(days=n): Counts(sent=10, delivered=10) for n in range(10)}

    assert window_counts(by_day, today, 7).sent == 70
    baseline = Baseline(today - timedelta(days=2), Counts(sent=4, delivered=4))
    assert window_counts(by_day, today, 7, baseline).sent == 6 + 10 + 10


def verdict(level: str | None) -> Verdict:
    return Verdict(Counts(), level, level is not None, level is None)


@pytest.mark.parametrize(
    ("current", "level", "may_end", "recent", "move"),
    [
        (Standing.GOOD, Standing.GOOD, False, 0, None),
        (Standing.GOOD, Standing.WARNING, False, 0, (Standing.WARNING, "rates")),
        (Standing.WARNING, Standing.GOOD, False, 0, (Standing.GOOD, "rates")),
        (Standing.GOOD, Standing.PROBATION, False, 0, (Standing.PROBATION, "rates")),
        (Standing.WARNING, Standing.PROBATION, False, 1, (Standing.PROBATION, "rates")),
        (Standing.WARNING, Standing.PROBATION, False, 2, (Standing.SUSPENDED, "repeat")),
        (Standing.GOOD, Standing.SUSPENDED, False, 0, (Standing.SUSPENDED, "rates")),
        (Standing.WARNING, None, False, 0, None),  # a review moves nothing
        (Standing.PROBATION, Standing.WARNING, False, 0, None),
        (Standing.PROBATION, Standing.GOOD, False, 0, None),  # not enough clean days yet
        (Standing.PROBATION, Standing.GOOD, True, 0, (Standing.GOOD, "clean")),
        (Standing.PROBATION, Standing.SUSPENDED, False, 0, (Standing.SUSPENDED, "rates")),
        (Standing.SUSPENDED, Standing.GOOD, True, 0, None),  # only the XES team lifts it
    ],
)
def test_state_machine(current: str, level: str | None, may_end: bool, recent: int, move: tuple | None) -> None:
    assert (
        next_standing(current, verdict(level), probation_may_end=may_end, recent_probations=recent, thresholds=T)
        == move
    )


@pytest.mark.parametrize(
    ("rate", "position"),
    [
        (None, 0.0),
        ("0", 0.0),
        ("0.04", 12.5),
        ("0.08", 25.0),
        ("0.09", 37.5),
        ("0.2", 62.5),
        ("0.3", 75.0),
        ("1", 100.0),
    ],
)
def test_the_meter_gives_each_level_an_equal_zone(rate: str | None, position: float) -> None:
    from deliverability.reputation.advice import zone_position

    levels = [Decimal("0.08"), Decimal("0.1"), Decimal("0.3")]
    assert zone_position(None if rate is None else Decimal(rate), levels) == position
