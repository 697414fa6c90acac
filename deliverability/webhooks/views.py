"""``POST /webhooks/ses/``: Amazon SES events (and subscription messages) from Amazon SNS.

No login and no CSRF token: the SNS signature is the authentication (:mod:`.sns`). The view only
checks, stores and answers; a job processes the stored message (:mod:`.processing`). Answers are
short JSON: 200 for stored or already stored, 400 for malformed, forged or stale messages, 403 for a
topic that is not ours, 413 for an oversized body, 503 when the signing certificate cannot be
fetched right now (SNS retries 5xx answers, and a certificate outage is not the sender's fault).
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from deliverability.webhooks import processing, sns

logger = logging.getLogger(__name__)

# An SNS message is at most 256 KB; its JSON envelope escapes the SES event once more.
MAX_BODY_BYTES = 1024 * 1024


def _error(code: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code}, status=status)


@csrf_exempt
@require_POST
def ses_events(request: HttpRequest) -> JsonResponse:
    """Check, store raw, answer; see the module docstring for the answers."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error("invalid_length", 400)
    if declared > MAX_BODY_BYTES:
        return _error("too_large", 413)
    try:
        body = request.body
    except RequestDataTooBig:
        return _error("too_large", 413)
    if len(body) > MAX_BODY_BYTES:
        return _error("too_large", 413)
    try:
        message = sns.verify_message(body, request.headers)
    except sns.Rejected as exc:
        # The log line is all that is kept of a refused message.
        logger.warning("SNS message refused (%s): %s", exc.status, exc.detail)
        return _error(exc.code, exc.status)
    except sns.CertificateUnavailable as exc:
        logger.warning("SNS signing certificate unavailable: %s", exc)
        response = _error("certificate_unavailable", 503)
        response["Retry-After"] = "30"
        return response
    notification_id = processing.store(message, body.decode("utf-8"))
    return JsonResponse({"status": "stored" if notification_id is not None else "duplicate"})
