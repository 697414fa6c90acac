"""GET /healthz reports the database, Redis, queue depth and workers as JSON."""

from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker


def test_it_reports_database_redis_and_queue_depth(client, db, django_capture_on_commit_callbacks) -> None:
    # Jobs are enqueued when the surrounding transaction commits (django-rq's on_db_commit mode).
    with django_capture_on_commit_callbacks(execute=True):
        django_rq.get_queue("default").enqueue("builtins.print", "hello")
        django_rq.get_queue("low").enqueue("builtins.print", "one")
        django_rq.get_queue("low").enqueue("builtins.print", "two")

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "vendor": "postgresql"}
    assert body["redis"] == {"ok": True, "configured": True}
    assert body["queues"] == {"default": 1, "sending": 0, "low": 2}


def test_queue_depth_drops_when_a_worker_has_run(client, db, django_capture_on_commit_callbacks) -> None:
    queue = django_rq.get_queue("default")
    with django_capture_on_commit_callbacks(execute=True):
        queue.enqueue("builtins.print", "hello")
    assert client.get("/healthz").json()["queues"]["default"] == 1
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert client.get("/healthz").json()["queues"]["default"] == 0


def test_it_answers_503_when_redis_is_down(client, db, settings) -> None:
    unreachable = "redis://127.0.0.1:1/0"
    settings.RQ_QUEUES = {name: {"URL": unreachable} for name in settings.RQ_QUEUES}

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["redis"]["ok"] is False
    assert body["database"]["ok"] is True


@pytest.mark.django_db
def test_it_is_not_cached(client) -> None:
    assert "no-cache" in client.get("/healthz").headers["Cache-Control"]
