"""Settings of the django-post-office side of ``manage.py bench_pipeline`` (a subprocess only).

The project's settings (same PostgreSQL database, same Redis) plus ``post_office`` in
``INSTALLED_APPS``, an e-mail backend that builds each message's bytes (as an SMTP or SES backend
must) and only counts them, and post_office's fastest settings for this workload: no retries, no
logging, large batches (fewer fork + query rounds; measured on our 2-core machine, 100 → 2,000
raised its rate), one thread per process (the counting backend is CPU-bound, so threads only add
GIL contention). The number of processes is ``send_queued``'s ``processes`` argument.
"""

from __future__ import annotations

import os

from xes_portal.settings import *  # noqa: F403 - a settings module extends the project's
from xes_portal.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "post_office"]
# Django 6.1's MAILERS (the project uses them; post_office 3.12 resolves its backend through them).
MAILERS = {"default": {"BACKEND": "campaigns.benchmarks.counting.CountingEmailBackend"}}
POST_OFFICE = {
    "DEFAULT_PRIORITY": "medium",
    "MAX_RETRIES": 0,
    "LOG_LEVEL": 0,
    "BATCH_SIZE": int(os.environ.get("XES_BENCH_POST_OFFICE_BATCH", "2000")),
    "THREADS_PER_PROCESS": 1,
    "MESSAGE_ID_ENABLED": False,
    "LOCK_FILE_NAME": "xes-bench-post-office",  # in the temporary directory
}
