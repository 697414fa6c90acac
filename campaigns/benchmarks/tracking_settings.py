"""Settings of the tracking benchmark's gunicorn: the project's settings with the tracking
middleware first (as production should have it), persistent database connections and quiet logs.
Never used by the portal itself."""

from __future__ import annotations

from xes_portal.settings import *  # noqa: F403 - a settings module extends the project's
from xes_portal.settings import MIDDLEWARE

_TRACKING = "campaigns.tracking.middleware.TrackingMiddleware"
MIDDLEWARE = [_TRACKING, *(m for m in MIDDLEWARE if m != _TRACKING)]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
