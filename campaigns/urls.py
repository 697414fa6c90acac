"""URLs under ``/campaigns/``: each views module declares its own patterns."""

from __future__ import annotations

from django.urls import include, path

from campaigns.views import campaigns, contacts, segments, templates

app_name = "campaigns"
urlpatterns = [
    *campaigns.urlpatterns,
    *contacts.urlpatterns,
    *segments.urlpatterns,
    *templates.urlpatterns,
    path("analytics/", include("campaigns.analytics.urls")),
]
