"""URLs under ``/campaigns/analytics/`` (namespace ``campaigns:analytics``)."""

from __future__ import annotations

from campaigns.analytics.views import urlpatterns

app_name = "analytics"
__all__ = ["app_name", "urlpatterns"]
