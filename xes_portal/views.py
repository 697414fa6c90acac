"""Project-level endpoints: health and the first API resource."""

from __future__ import annotations

import django_rq
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rq import Worker


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """JSON health: database, Redis and queue depth. 503 when a component is down."""
    body: dict[str, object] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        body["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - health must report, not crash
        healthy = False
        body["database"] = {"ok": False, "error": str(exc)}
    if not settings.REDIS_URL:
        body["redis"] = {"ok": True, "configured": False}
        body["queues"] = {}
        body["workers"] = 0
    else:
        try:
            conn = django_rq.get_connection("default")
            conn.ping()
            body["redis"] = {"ok": True, "configured": True}
            body["queues"] = {name: django_rq.get_queue(name).count for name in settings.RQ_QUEUES}
            body["workers"] = Worker.count(connection=conn)
        except Exception as exc:  # noqa: BLE001
            healthy = False
            body["redis"] = {"ok": False, "configured": True, "error": str(exc)}
            body["queues"] = {}
            body["workers"] = 0
    body["status"] = "ok" if healthy else "error"
    return JsonResponse(body, status=200 if healthy else 503)
