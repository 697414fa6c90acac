"""Unsubscribe: the page behind every promotional e-mail's link and List-Unsubscribe header.

``GET /u/<token>`` only shows a confirm button (mail scanners open links; opening must change
nothing). ``POST /u/<token>`` unsubscribes: from the page's button, or as the RFC 8058 one-click POST
that mail clients send with ``List-Unsubscribe=One-Click`` in the body, without cookies (so no CSRF
token: the unguessable token in the URL is the authorisation). It is idempotent, and the address is
on the sending account's suppression list from that moment: the next send skips it.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from campaigns.events import record_event
from campaigns.models import Message, MessageEvent
from deliverability.models import Suppression
from deliverability.suppressions import is_suppressed, suppress


@csrf_exempt
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    message = Message.objects.select_related("sending_account__organisation").filter(token=token).first()
    if message is None:
        return render(request, "campaigns/unsubscribe.html", {"state": "invalid"}, status=404)
    account = message.sending_account
    if request.method == "POST":
        with transaction.atomic():
            if not is_suppressed(account, message.to_email):
                suppress(account, message.to_email, Suppression.Reason.UNSUBSCRIBE, note=f"message {message.pk}")
            if not message.events.filter(type=MessageEvent.Type.UNSUBSCRIBE).exists():
                one_click = request.POST.get("List-Unsubscribe") == "One-Click"
                record_event(message, MessageEvent.Type.UNSUBSCRIBE, data={"one_click": one_click})
        state = "done"
    elif request.method == "GET":
        state = "done" if is_suppressed(account, message.to_email) else "confirm"
    else:
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    context = {"state": state, "email": message.to_email, "sender": account.organisation.name, "token": token}
    return render(request, "campaigns/unsubscribe.html", context)


urlpatterns = [path("u/<str:token>", unsubscribe, name="unsubscribe")]
