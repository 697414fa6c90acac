"""URLs under ``/automation/``: trigger rules and webhook endpoints."""

from __future__ import annotations

from campaigns.automation.views import urlpatterns as view_patterns

app_name = "automation"
urlpatterns = [*view_patterns]
