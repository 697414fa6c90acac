"""Settings of the benchmark's worker processes: the project's settings with the send-rate limit
off (``SENDING_RATE_LIMIT``, read by :func:`campaigns.sending.ratelimit.provider_rate`), as the
issue's end-to-end measurement asks. Never used by the portal itself."""

from __future__ import annotations

from xes_portal.settings import *  # noqa: F403 - a settings module extends the project's

SENDING_RATE_LIMIT = False
