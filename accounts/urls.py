"""Portal URLs of the accounts app."""

from __future__ import annotations

from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("settings/", views.organisation_settings, name="organisation_settings"),
    path("switch/<int:organisation_id>/", views.switch_organisation, name="switch_organisation"),
    path("members/", views.member_list, name="member_list"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<int:pk>/role/", views.member_change_role, name="member_change_role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("members/invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("invitations/<str:token>/", views.accept_invitation, name="accept_invitation"),
    path("clients/", views.client_list, name="client_list"),
    path("clients/new/", views.client_create, name="client_create"),
    path("clients/<int:pk>/", views.client_detail, name="client_detail"),
    path("clients/<int:pk>/edit/", views.client_edit, name="client_edit"),
    path("sending-accounts/", views.account_list, name="account_list"),
    path("sending-accounts/new/", views.account_create, name="account_create"),
    path("sending-accounts/<int:pk>/", views.account_detail, name="account_detail"),
    path("sending-accounts/<int:pk>/edit/", views.account_edit, name="account_edit"),
    path("senders/", views.sender_list, name="sender_list"),
    path("senders/new/", views.sender_create, name="sender_create"),
    path("senders/<int:pk>/resend/", views.sender_resend, name="sender_resend"),
    path("senders/<int:pk>/delete/", views.sender_delete, name="sender_delete"),
    path("verify/<str:token>", views.verify_sender, name="verify_sender"),
    path("verify/<str:token>/resend", views.verify_sender_resend, name="verify_sender_resend"),
    path("api-keys/", views.api_key_list, name="api_key_list"),
    path("api-keys/new/", views.api_key_create, name="api_key_create"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
