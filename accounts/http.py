"""Typed requests for views behind :func:`accounts.decorators.membership_required`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from accounts.models import Membership, User


class AuthedRequest(HttpRequest):
    user: User  # type: ignore[assignment]
    membership: Membership
