"""The one mechanism that scopes data to a tenant.

Every tenant-owned model uses :class:`TenantQuerySet` (through ``TenantManager``) and names the
path from itself to its organisation and, where it has one, to its client. Views and API
endpoints never filter by hand: they call ``Model.objects.for_membership(membership)`` or
:func:`get_for_membership`, which answers 404 for anything outside the caller's tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar

from django.db import models
from django.http import Http404

if TYPE_CHECKING:
    from accounts.models import Membership, Organisation

M = TypeVar("M", bound=models.Model)


class TenantQuerySet(models.QuerySet[M]):
    """A queryset that knows how to restrict itself to one organisation or one client."""

    def _paths(self) -> tuple[str, str | None]:
        model: Any = self.model
        return model.tenant_organisation_path, getattr(model, "tenant_client_path", None)

    def for_organisation(self, organisation: Organisation) -> Self:
        org_path, _ = self._paths()
        return self.filter(**{org_path: organisation})

    def for_membership(self, membership: Membership | None) -> Self:
        """Rows the membership may see: its organisation's, and only its client's for client-users."""
        if membership is None:
            return self.none()
        org_path, client_path = self._paths()
        qs = self.filter(**{org_path: membership.organisation_id})
        if membership.is_client_user:
            if client_path is None:
                # Organisation-wide data without a client is invisible to client-users.
                return self.none()
            qs = qs.filter(**{client_path: membership.client_id})
        return qs


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    """Default manager of tenant-owned models."""


def get_for_membership(queryset: Any, membership: Membership | None, **lookup: Any) -> Any:
    """Fetch one object inside the membership's tenant, or raise 404 (never 403: no oracle)."""
    try:
        return queryset.for_membership(membership).get(**lookup)
    except queryset.model.DoesNotExist as exc:
        raise Http404 from exc
