"""Portal URLs of the plans app (Plan & usage)."""

from __future__ import annotations

from django.urls import path

from plans import exports, views

urlpatterns = [
    path("", views.overview, name="plans_overview"),
    path("order/<int:plan_id>/", views.order_plan, name="plans_order_plan"),
    path("addons/order/", views.order_addon, name="plans_order_addon"),
    path("orders/<int:pk>/cancel/", views.cancel_order, name="plans_cancel_order"),
    path("settings/", views.overage_settings, name="plans_overage_settings"),
    path("clients/<int:client_id>/cap/", views.client_cap, name="plans_client_cap"),
    path("statements/", exports.statements, name="plans_statements"),
    path("statements/export.<str:fmt>", exports.statement_export, name="plans_statement_export"),
]
