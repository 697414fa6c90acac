"""API routes under ``/api/v1/`` (DESIGN.md: public and stable). Included by ``xes_portal/urls.py``."""

from __future__ import annotations

from django.urls import path

from campaigns.api import views

urlpatterns = [
    path("messages", views.MessageCreateView.as_view(), name="api_messages"),
    path("messages/<int:pk>", views.MessageDetailView.as_view(), name="api_message_detail"),
    path("openapi.json", views.SchemaView.as_view(), name="api_schema"),
    path("docs", views.DocsView.as_view(), name="api_docs"),
]
