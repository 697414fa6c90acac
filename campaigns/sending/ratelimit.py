"""The per-sending-account rate limiter, shared by every worker on every machine (one Lua script).

Two limits apply to each sending account:

- the provider's maximum send rate (``provider.quota().max_send_rate``, messages per second): the
  script hands out *send slots* spaced exactly ``1 / rate`` apart (a GCRA-style "theoretical arrival
  time" kept in Redis), so no one-second window ever holds more than ``rate`` sends, whatever the
  number of workers. A worker may book a few slots at once, but never more than :data:`HORIZON`
  ahead, so a changed rate takes effect within that time;
- the warm-up cap of the UTC day (``deliverability.warmup.daily_cap``), a counter per account and
  day that the same script increments.

The rate is read through the Django cache (Redis) with a one-second lifetime, so a changed quota
reaches all workers within a second at the cost of one provider call per second in total.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from deliverability.models import ProviderSetup
from deliverability.warmup import daily_cap

HORIZON = 0.5  # seconds: how far ahead a worker may book slots
RATE_CACHE_SECONDS = 1
CAP_CACHE_SECONDS = 60

# KEYS: [1] theoretical arrival time (µs), [2] today's counter.
# ARGV: [1] interval between sends (µs, 0 = no rate limit), [2] slots wanted, [3] horizon (µs),
#       [4] daily cap (-1 = none), [5] counter lifetime (s).
# Returns {granted, wait_us}: granted > 0 -> the first slot is wait_us from now, the next ones follow
# every interval; granted = 0 -> try again in wait_us; granted = -1 -> the daily cap is reached.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap >= 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= cap then return {-1, 0} end
  if want > cap - used then want = cap - used end
end
local first = now
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local ahead = tat - now
  if ahead > horizon then return {0, string.format('%.0f', ahead - horizon)} end
  local room = math.floor((horizon - ahead) / interval) + 1
  if want > room then want = room end
  first = tat
  local new_tat = tat + want * interval
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 60000)
end
if cap >= 0 then
  redis.call('INCRBY', KEYS[2], want)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
return {want, string.format('%.0f', first - now)}
"""

# After a Throttled answer every worker of the account waits this long before its next slot.
_PENALISE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_us then
  redis.call('SET', KEYS[1], string.format('%.0f', until_us), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 60000)
end
return 1
"""


class DailyCapReached(Exception):
    """The account's warm-up cap for today is used up; ``resume_at`` is the next UTC midnight."""

    def __init__(self, resume_at: datetime) -> None:
        super().__init__(f"daily warm-up cap reached; resumes at {resume_at.isoformat()}")
        self.resume_at = resume_at


def next_utc_midnight(now: datetime | None = None) -> datetime:
    now = (now or timezone.now()).astimezone(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def provider_rate(setup: ProviderSetup) -> float:
    """Messages per second the account may send (0: unlimited), cached for one second in Redis.

    ``SENDING_RATE_LIMIT = False`` in settings switches the limit off (benchmarks)."""
    from campaigns.sending.providers import provider_for_setup

    if not getattr(settings, "SENDING_RATE_LIMIT", True):
        return 0.0
    provider = provider_for_setup(setup)
    key = f"xes:sending:rate:{provider.name}"
    rate = cache.get(key)
    if rate is None:
        rate = float(provider.quota().max_send_rate)
        cache.set(key, rate, RATE_CACHE_SECONDS)
    return float(rate)


def warmup_cap(sending_account_id: int) -> int | None:
    """Today's warm-up cap of the account (None: none), cached for a minute."""
    key = f"xes:sending:cap:{sending_account_id}:{timezone.now().astimezone(UTC):%Y%m%d}"
    cached = cache.get(key)
    if cached is None:
        cap = daily_cap(sending_account_id)
        cache.set(key, -1 if cap is None else cap, CAP_CACHE_SECONDS)
        return cap
    return None if cached < 0 else int(cached)


@dataclass
class Limiter:
    """Books send slots for one sending account; :meth:`wait_for_slot` before every provider call."""

    setup: ProviderSetup
    slots: int = 0  # booked and not used yet
    next_slot: float = 0.0  # time.monotonic() of the next booked slot
    interval: float = 0.0

    def __post_init__(self) -> None:
        self.redis = django_rq.get_connection("sending")
        self.script = self.redis.register_script(_SCRIPT)
        self.penalty = self.redis.register_script(_PENALISE)
        self.account_id = self.setup.sending_account_id

    def wait_for_slot(self, want: int = 1) -> None:
        """Block until the account may send one message; books up to ``want`` slots at once.

        Raises :class:`DailyCapReached` when today's warm-up cap is used up.
        """
        if self.slots <= 0:
            self._book(max(1, want))
        delay = self.next_slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.slots -= 1
        self.next_slot += self.interval

    def _book(self, want: int) -> None:
        while True:
            rate = provider_rate(self.setup)
            cap = warmup_cap(self.account_id)
            interval_us = int(1_000_000 / rate) if rate > 0 else 0
            day = timezone.now().astimezone(UTC)
            granted, wait_us = self.script(
                keys=[f"xes:sending:tat:{self.account_id}", f"xes:sending:day:{self.account_id}:{day:%Y%m%d}"],
                args=[interval_us, want, int(HORIZON * 1_000_000), -1 if cap is None else cap, 2 * 86_400],
            )
            granted, wait = int(granted), int(wait_us) / 1_000_000
            if granted < 0:
                raise DailyCapReached(next_utc_midnight())
            if granted == 0:
                time.sleep(min(wait, HORIZON))
                continue
            self.slots = granted
            self.interval = interval_us / 1_000_000
            self.next_slot = time.monotonic() + wait
            return

    def penalise(self, seconds: float) -> None:
        """The provider throttled us: every worker of this account pauses for ``seconds``."""
        self.slots = 0
        self.penalty(keys=[f"xes:sending:tat:{self.account_id}"], args=[int(seconds * 1_000_000)])
