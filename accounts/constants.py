"""Roles and what each may do. One table, read by views, templates and the API alike."""

from __future__ import annotations

from enum import StrEnum


class Perm(StrEnum):
    """Portal permissions; a role is a set of these."""

    VIEW = "view"
    VIEW_MEMBERS = "view_members"
    MANAGE_ORGANISATION = "manage_organisation"
    INVITE_MEMBERS = "invite_members"
    MANAGE_MEMBERS = "manage_members"  # change roles, remove members
    MANAGE_CLIENTS = "manage_clients"
    MANAGE_SENDING_ACCOUNTS = "manage_sending_accounts"
    MANAGE_SENDERS = "manage_senders"
    MANAGE_API_KEYS = "manage_api_keys"
    MANAGE_DOMAINS = "manage_domains"  # add domains, run the DNS wizard
    MANAGE_CAMPAIGNS = "manage_campaigns"  # contacts, segments, templates, rules, campaigns
    VIEW_BILLING = "view_billing"  # prices, orders, overage money on the Plan & usage page
    MANAGE_PLANS = "manage_plans"  # order plans and add-ons, overage settings, client caps: owners only


ROLE_PERMS: dict[str, frozenset[Perm]] = {
    "owner": frozenset(Perm),
    "admin": frozenset(Perm) - {Perm.MANAGE_MEMBERS, Perm.MANAGE_PLANS},
    "member": frozenset({Perm.VIEW, Perm.VIEW_MEMBERS, Perm.MANAGE_SENDERS, Perm.MANAGE_CAMPAIGNS}),
    "client_user": frozenset({Perm.VIEW, Perm.MANAGE_SENDERS, Perm.MANAGE_CAMPAIGNS}),
}

# Display names must not break a mail header: no control characters at all (CR/LF included).
DISPLAY_NAME_MAX_LENGTH = 100
API_KEY_PREFIX = "xes"
