"""URLs under ``/deliverability/``: each views module declares its own patterns."""

from __future__ import annotations

from deliverability.views import accounts, domains, ips

app_name = "deliverability"
urlpatterns = [*domains.urlpatterns, *ips.urlpatterns, *accounts.urlpatterns]
