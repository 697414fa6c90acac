"""Attach the active membership (organisation and role) to every request."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

if TYPE_CHECKING:
    from accounts.models import Membership

SESSION_KEY = "xes_organisation_id"


def active_membership(request: HttpRequest) -> Membership | None:
    """The membership of the organisation chosen in the session, else the user's first one."""
    from accounts.models import Membership

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("organisation", "client").filter(user=user)
    chosen = request.session.get(SESSION_KEY)
    if chosen is not None:
        membership = memberships.filter(organisation_id=chosen).first()
        if membership is not None:
            return membership
    return memberships.order_by("created_at", "pk").first()


class MembershipMiddleware:
    """Sets ``request.membership`` lazily (no query for anonymous or static requests)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.membership = SimpleLazyObject(lambda: active_membership(request))  # type: ignore[attr-defined]
        return self.get_response(request)
