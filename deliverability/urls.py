"""URLs under ``/deliverability/``: each views module declares its own patterns."""

from __future__ import annotations

from django.urls import include, path
from django.views.generic import RedirectView

from deliverability.views import accounts, domains, ips, suppressions

app_name = "deliverability"
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="deliverability:domain_list"), name="index"),
    *domains.urlpatterns,
    *ips.urlpatterns,
    *accounts.urlpatterns,
    *suppressions.urlpatterns,
    path("", include("deliverability.reputation.urls")),
]
