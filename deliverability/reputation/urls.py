"""URLs of the reputation pages, included under ``/deliverability/`` (namespace ``deliverability``)."""

from __future__ import annotations

from django.urls import path

from deliverability.reputation import views

urlpatterns = [
    path("accounts/<int:pk>/reputation/", views.reputation, name="reputation"),
]
