"""The reputation rules as pure functions of counts and thresholds (no database, no clock).

- Bounce rate = hard bounces / sent; complaint rate = complaints / delivered (percent).
- Rates apply once the window holds at least ``min_deliveries`` deliveries. Below that no rate
  changes a standing: ``review_complaints`` complaints or ``review_hard_bounces`` hard bounces open
  a review for the XES team instead (an alarm, not a level), and a window without either is clean.
- The level of a window is the strictest level reached by either rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from accounts.models import SendingAccount

if TYPE_CHECKING:
    from deliverability.reputation.models import Thresholds

Standing = SendingAccount.Standing
RANK = {Standing.GOOD: 0, Standing.WARNING: 1, Standing.PROBATION: 2, Standing.SUSPENDED: 3}
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Counts:
    """Counts of a day or a window."""

    sent: int = 0
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def minus(self, other: Counts) -> Counts:
        """``self - other``, never below zero (a baseline taken before later increments)."""
        return Counts(*(max(0, getattr(self, f.name) - getattr(other, f.name)) for f in fields(self)))

    @classmethod
    def total(cls, items: Iterable[Counts]) -> Counts:
        result = cls()
        for item in items:
            result = result + item
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counts:
        return cls(**{f.name: int(data.get(f.name) or 0) for f in fields(cls)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def attempted(self) -> int:
        """Sends, at least as many as the outcomes seen (a lost ``Send`` event must not inflate rates)."""
        return max(self.sent, self.delivered + self.hard_bounces + self.soft_bounces)

    @property
    def bounce_rate(self) -> Decimal | None:
        return self.hard_bounces * HUNDRED / self.attempted if self.attempted else None

    @property
    def complaint_rate(self) -> Decimal | None:
        return self.complaints * HUNDRED / self.delivered if self.delivered else None

    @property
    def soft_bounce_rate(self) -> Decimal | None:
        return self.soft_bounces * HUNDRED / self.attempted if self.attempted else None


@dataclass(frozen=True)
class Verdict:
    """What a window says. ``level`` is None when it cannot say (too few deliveries, with a review)."""

    counts: Counts
    level: str | None
    rates_apply: bool
    review: bool
    bounce_level: str = Standing.GOOD
    complaint_level: str = Standing.GOOD

    @property
    def clean(self) -> bool:
        """Below the warning levels (a day that counts towards the end of a probation)."""
        return self.level == Standing.GOOD


def level_for(rate: Decimal | None, levels: list[tuple[str, Decimal]]) -> str:
    """The strictest level whose threshold ``rate`` reaches (``>=``)."""
    if rate is None:
        return Standing.GOOD
    for level, threshold in levels:
        if rate >= threshold:
            return level
    return Standing.GOOD


def stricter(a: str, b: str) -> str:
    return a if RANK[Standing(a)] >= RANK[Standing(b)] else b


def assess(counts: Counts, thresholds: Thresholds) -> Verdict:
    """The verdict on one window of counts."""
    if counts.delivered >= thresholds.min_deliveries:
        bounce = level_for(counts.bounce_rate, thresholds.levels("bounce"))
        complaint = level_for(counts.complaint_rate, thresholds.levels("complaint"))
        return Verdict(counts, stricter(bounce, complaint), True, False, bounce, complaint)
    review = counts.complaints >= thresholds.review_complaints or counts.hard_bounces >= thresholds.review_hard_bounces
    return Verdict(counts, None if review else Standing.GOOD, False, review)


def window_days(end: date, days: int) -> list[date]:
    """The UTC days of the window that ends on ``end`` (``end`` included), oldest first."""
    return [end - timedelta(days=n) for n in range(days - 1, -1, -1)]


@dataclass(frozen=True)
class Baseline:
    """A moment a window starts at: nothing before ``day``, and on ``day`` only what came after
    ``counts`` (that day's counts at the moment)."""

    day: date
    counts: Counts

    @staticmethod
    def latest(*candidates: Baseline | None) -> Baseline | None:
        present = [b for b in candidates if b is not None]
        if not present:
            return None
        return max(present, key=lambda b: (b.day, sum(b.counts.as_dict().values())))


def window_counts(by_day: dict[date, Counts], end: date, days: int, baseline: Baseline | None = None) -> Counts:
    """The counts of the window ending on ``end``, without what came before ``baseline``."""
    total = Counts()
    for day in window_days(end, days):
        counts = by_day.get(day)
        if counts is None or (baseline is not None and day < baseline.day):
            continue
        if baseline is not None and day == baseline.day:
            counts = counts.minus(baseline.counts)
        total = total + counts
    return total


def clean_streak(by_day: dict[date, Counts], today: date, thresholds: Thresholds, baseline: Baseline | None) -> int:
    """How many days in a row, back from today and at most ``clean_days``, the window ending on each
    day (counted from ``baseline``) stayed below the warning levels."""
    streak = 0
    for n in range(thresholds.clean_days):
        end = today - timedelta(days=n)
        if not assess(window_counts(by_day, end, thresholds.window_days, baseline), thresholds).clean:
            break
        streak += 1
    return streak


def next_standing(
    current: str, verdict: Verdict, *, probation_may_end: bool, recent_probations: int, thresholds: Thresholds
) -> tuple[str, str] | None:
    """The automatic move from ``current``, as ``(new standing, why)``, or None to stay.

    ``why`` is one of ``rates``, ``clean``, ``repeat`` (the n-th probation in the period), and
    ``recent_probations`` counts the probations that started within the period.
    1. Suspended stays until the XES team lifts it.
    2. Probation moves only to suspended (rates) or, after the clean days, back to good.
    3. Good and warning follow the window's level; a probation that would be the
       ``probations_to_suspend``-th within the period suspends instead.
    4. Without a level (a review on few e-mails) nothing moves.
    """
    level = verdict.level
    if current == Standing.SUSPENDED:
        return None
    if current == Standing.PROBATION:
        if level == Standing.SUSPENDED:
            return Standing.SUSPENDED, "rates"
        if probation_may_end:
            return Standing.GOOD, "clean"
        return None
    if level is None or level == current:
        return None
    if level == Standing.PROBATION and recent_probations + 1 >= thresholds.probations_to_suspend:
        return Standing.SUSPENDED, "repeat"
    return level, "rates"
