"""URLs under ``/webhooks/`` (public interface, DESIGN.md: ``POST /webhooks/ses/``)."""

from __future__ import annotations

from django.urls import path

from deliverability.webhooks import views

urlpatterns = [
    path("ses/", views.ses_events, name="ses_webhook"),
]
