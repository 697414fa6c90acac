"""Root URLs. Public interfaces are listed in DESIGN.md and must stay stable."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from campaigns.views import unsubscribe as unsubscribe_views
from xes_portal import api, views

admin.site.site_header = _("XES back office")
admin.site.site_title = _("XES back office")
admin.site.index_title = _("XES team")

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/account", api.account, name="api_account"),
    path("api/v1/", include("campaigns.api.urls")),
    path("plans/", include("plans.urls")),
    path("deliverability/", include("deliverability.urls")),
    path("webhooks/", include("deliverability.webhooks.urls")),
    path("campaigns/", include("campaigns.urls")),
    path("automation/", include("campaigns.automation.urls")),
    path("", include(unsubscribe_views.urlpatterns)),
    path("", include("campaigns.tracking.views")),
    path("", include("accounts.urls")),
]
