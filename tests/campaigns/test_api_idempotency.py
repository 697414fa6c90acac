"""The ``Idempotency-Key`` header: a repeated request gives the first message and sends nothing again,
also when the repeats race each other on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from accounts.models import SendingAccount
from campaigns.models import Message
from plans.models import Reservation
from tests.campaigns.fixtures_api import Api, api_fixture, api_for, give_credits, make_template  # noqa: F401
from tests.conftest import Tenant
from tests.factories import VerifiedSenderFactory

KEY = "order-4711-confirmation"


def test_a_repeat_gives_the_same_message_with_200(api: Api) -> None:
    first = api.send(api.body(), **{"Idempotency-Key": KEY})

    again = api.send(api.body(), **{"Idempotency-Key": KEY})

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == first.json()
    assert Message.objects.count() == 1
    assert Message.objects.get().idempotency_key == KEY
    assert Reservation.objects.count() == 1


def test_a_repeat_is_answered_even_after_the_account_was_suspended(api: Api) -> None:
    first = api.send(api.body(), **{"Idempotency-Key": KEY})
    SendingAccount.objects.filter(pk=api.account.pk).update(standing=SendingAccount.Standing.SUSPENDED)

    again = api.send(api.body(), **{"Idempotency-Key": KEY})

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_without_a_key_two_requests_are_two_messages(api: Api) -> None:
    api.send(api.body())
    api.send(api.body())

    assert Message.objects.count() == 2


def test_different_keys_are_different_messages(api: Api) -> None:
    api.send(api.body(), **{"Idempotency-Key": "one"})
    api.send(api.body(), **{"Idempotency-Key": "two"})

    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    "change",
    [
        {"to": "bob@example.com"},
        {"data": {"first_name": "Bob"}},
        {"touchpoint": "promotional"},
        {"template": "other"},
        {"sender": "second@alpha.example"},
    ],
    ids=["to", "data", "touchpoint", "template", "sender"],
)
def test_the_same_key_with_another_body_is_refused_with_422(api: Api, change: dict[str, Any]) -> None:
    make_template(api.account, "other")
    VerifiedSenderFactory(sending_account=api.account, email="second@alpha.example")
    api.send(api.body(), **{"Idempotency-Key": KEY})

    response = api.send(api.body(**change), **{"Idempotency-Key": KEY})

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert "different request" in response.json()["detail"]
    assert Message.objects.count() == 1


def test_the_recipients_case_is_no_different_body(api: Api) -> None:
    api.send(api.body(), **{"Idempotency-Key": KEY})

    assert api.send(api.body(to="ADA@example.com"), **{"Idempotency-Key": KEY}).status_code == 200


def test_naming_the_default_sender_is_the_same_request(api: Api) -> None:
    api.send(api.body(), **{"Idempotency-Key": KEY})

    assert api.send(api.body(sender=api.sender.email), **{"Idempotency-Key": KEY}).status_code == 200


def test_the_same_key_on_another_account_is_another_message(api: Api, tenant: Tenant) -> None:
    sender = VerifiedSenderFactory(sending_account=tenant.account_b, email="ok@beta.example")
    other = api_for(tenant.account_b, sender, api.template)
    first = api.send(api.body(), **{"Idempotency-Key": KEY})

    second = other.send(other.body(), **{"Idempotency-Key": KEY})

    assert second.status_code == 202
    assert second.json()["id"] != first.json()["id"]
    assert Message.objects.filter(idempotency_key=KEY).count() == 2


@pytest.mark.parametrize("value", ["x" * 201, "has space", "tab\tkey", "ümlaut"], ids=["long", "space", "tab", "utf8"])
def test_an_invalid_key_is_refused(api: Api, value: str) -> None:
    response = api.send(api.body(), **{"Idempotency-Key": value})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["Idempotency-Key"]
    assert not Message.objects.exists()


def test_a_key_of_200_characters_is_accepted(api: Api) -> None:
    assert api.send(api.body(), **{"Idempotency-Key": "k" * 200}).status_code == 202


def test_a_refused_request_may_be_retried_with_the_same_key(tenant: Tenant) -> None:
    sender = VerifiedSenderFactory(sending_account=tenant.account_b, email="ok@beta.example")
    caller = api_for(tenant.account_b, sender, make_template(tenant.account_b))
    assert caller.send(caller.body(), **{"Idempotency-Key": KEY}).status_code == 402

    give_credits(tenant.account_b)
    response = caller.send(caller.body(), **{"Idempotency-Key": KEY})

    assert response.status_code == 202


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_make_one_message(api: Api) -> None:
    # given eight clients sending the same request with the same key at the same instant
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    answers: list[tuple[int, Any]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def send() -> None:
        try:
            caller = Api(api.http.__class__(), api.raw, api.key, api.account, api.sender, api.template)
            barrier.wait(timeout=10)
            response = caller.send(caller.body(), **{"Idempotency-Key": KEY})
            with lock:
                answers.append((response.status_code, response.json()))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            with lock:
                failures.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=send) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then exactly one message and one reservation; every answer names it, one of them created it
    assert failures == []
    assert Message.objects.count() == 1
    message = Message.objects.get()
    assert Reservation.objects.count() == 1
    assert sorted(status for status, _body in answers) == [200] * (threads_count - 1) + [202]
    assert {body["id"] for _status, body in answers} == {message.pk}
