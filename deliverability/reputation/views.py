"""The customer's reputation page of a sending account (tenant-scoped: outsiders get 404)."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import SendingAccount
from deliverability.reputation.advice import STANDING_MEANING, build_report
from xes_portal.lib.tenancy import get_for_membership


@membership_required()
def reputation(request: AuthedRequest, pk: int) -> HttpResponse:
    """Standing, the 7-day rates against the thresholds, the score, trends, history and advice."""
    account = get_for_membership(SendingAccount.objects.select_related("client"), request.membership, pk=pk)
    report = build_report(account, timezone.now())
    return render(
        request,
        "deliverability/reputation/page.html",
        {"account": account, "report": report, "meaning": STANDING_MEANING.get(account.standing, "")},
    )
