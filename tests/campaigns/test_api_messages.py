"""``POST /api/v1/messages`` and ``GET /api/v1/messages/{id}``: sends, validation rules, refusals,
tenancy (another account's or organisation's objects are never found)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import SendingAccount, User
from campaigns.models import Message, MessageEvent
from deliverability.models import Suppression
from plans.models import Reservation
from tests.campaigns.fixtures_api import (  # noqa: F401
    Api,
    api_fixture,
    api_for,
    give_credits,
    make_message,
    make_template,
)
from tests.conftest import Tenant
from tests.factories import SenderAddressFactory, VerifiedSenderFactory


def errors_of(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"]
    return dict(body["errors"])


# --- sending ------------------------------------------------------------------------------


def test_it_queues_a_message_and_answers_202(api: Api) -> None:
    response = api.send(api.body())

    assert response.status_code == 202
    message = Message.objects.get()
    assert response.json() == {"id": message.pk, "status": "queued"}
    assert response["Location"] == f"/api/v1/messages/{message.pk}"
    assert message.sending_account == api.account
    assert message.template == api.template
    assert message.sender == api.sender
    assert message.to_email == "ada@example.com"
    assert message.data == {"first_name": "Ada"}
    assert message.promotional is False
    assert message.campaign is None
    assert message.reservation is not None
    assert Reservation.objects.get(pk=message.reservation_id).quantity == 1


def test_the_template_may_be_given_by_id(api: Api) -> None:
    response = api.send(api.body(template=api.template.pk))

    assert response.status_code == 202
    assert Message.objects.get().template == api.template


def test_a_quoted_id_that_is_no_slug_is_taken_as_an_id(api: Api) -> None:
    response = api.send(api.body(template=str(api.template.pk)))

    assert response.status_code == 202


def test_a_template_of_the_accounts_own_client_may_be_used(api: Api, tenant: Tenant) -> None:
    own = make_template(api.account, "alpha-news", client=tenant.client_a)

    response = api.send(api.body(template="alpha-news"))

    assert response.status_code == 202
    assert Message.objects.get().template == own


def test_promotional_touchpoint(api: Api) -> None:
    response = api.send(api.body(touchpoint="promotional"))

    assert response.status_code == 202
    assert Message.objects.get().promotional is True


def test_an_explicit_verified_sender_is_used(api: Api) -> None:
    second = VerifiedSenderFactory(sending_account=api.account, email="info@alpha.example")

    response = api.send(api.body(sender="INFO@alpha.example"))

    assert response.status_code == 202
    assert Message.objects.get().sender == second


def test_the_recipient_is_normalised(api: Api) -> None:
    response = api.send(api.body(to="  Ada@BÜCHER.example "))

    assert response.status_code == 202
    assert Message.objects.get().to_email == "Ada@xn--bcher-kva.example"


def test_data_may_be_left_out(api: Api) -> None:
    response = api.send(api.body(data=None))

    assert response.status_code == 202
    assert Message.objects.get().data == {}


def test_a_suppressed_recipient_is_recorded_as_suppressed_without_credits(api: Api) -> None:
    # A hard bounce stops even transactional mail (the API's default); an unsubscribe would not.
    Suppression.objects.create(sending_account=api.account, email="ada@example.com", reason="hard_bounce")

    response = api.send(api.body(to="ADA@example.com"))

    assert response.status_code == 202
    message = Message.objects.get()
    assert response.json() == {"id": message.pk, "status": "suppressed"}
    assert message.reservation is None
    assert not Reservation.objects.exists()


# --- one test per validation rule -----------------------------------------------------------------


def test_the_template_is_required(api: Api) -> None:
    assert errors_of(api.send(api.body(template=None))) == {"template": ["This field is required."]}


@pytest.mark.parametrize("value", ["nope", 999999, "999999"])
def test_an_unknown_template_is_not_found(api: Api, value: Any) -> None:
    errors = errors_of(api.send(api.body(template=value)))

    assert errors == {"template": ["No template with this id or slug is available to this sending account."]}


@pytest.mark.parametrize("value", [True, [], {}, "", 1.5])
def test_the_template_must_be_an_id_or_a_slug(api: Api, value: Any) -> None:
    errors = errors_of(api.send(api.body(template=value)))

    assert errors == {"template": ["Give the template's id (a number) or its slug (a string)."]}


def test_a_template_of_another_organisation_is_not_found(api: Api, outsider: User) -> None:
    other_account = SendingAccount.objects.get(organisation__memberships__user=outsider)
    theirs = make_template(other_account, "theirs")

    for ref in ("theirs", theirs.pk):
        errors = errors_of(api.send(api.body(template=ref)))
        assert errors == {"template": ["No template with this id or slug is available to this sending account."]}
    assert not Message.objects.exists()


def test_a_template_of_another_client_is_not_found(api: Api, tenant: Tenant) -> None:
    make_template(api.account, "beta-only", client=tenant.client_b)

    errors = errors_of(api.send(api.body(template="beta-only")))

    assert list(errors) == ["template"]


def test_the_recipient_is_required(api: Api) -> None:
    assert errors_of(api.send(api.body(to=None))) == {"to": ["This field is required."]}


@pytest.mark.parametrize(
    "value",
    ["not-an-address", "Ada <ada@example.com>", "ada@example.com\r\nBcc: x@example.com", "a@b@example.com", ""],
)
def test_an_invalid_recipient_is_refused(api: Api, value: str) -> None:
    errors = errors_of(api.send(api.body(to=value)))

    assert list(errors) == ["to"]
    assert not Message.objects.exists()


def test_a_recipient_must_be_a_string(api: Api) -> None:
    assert list(errors_of(api.send(api.body(to=["ada@example.com"])))) == ["to"]


@pytest.mark.parametrize("value", [["a"], "text", 3, True])
def test_data_must_be_an_object(api: Api, value: Any) -> None:
    errors = errors_of(api.send(api.body(data=value)))

    assert errors == {"data": ['Send the merge data as a JSON object, like {"first_name": "Ada"}.']}


def test_data_over_64_kb_is_refused(api: Api) -> None:
    errors = errors_of(api.send(api.body(data={"blob": "x" * (64 * 1024)})))

    assert errors["data"][0].startswith("The merge data is too large:")
    assert "at most 65536" in errors["data"][0]


def test_data_just_under_64_kb_is_accepted(api: Api) -> None:
    response = api.send(api.body(data={"blob": "x" * (64 * 1024 - 20)}))

    assert response.status_code == 202


def test_a_sender_of_another_account_is_refused(api: Api, tenant: Tenant) -> None:
    VerifiedSenderFactory(sending_account=tenant.account_b, email="verified@beta.example")

    errors = errors_of(api.send(api.body(sender="verified@beta.example")))

    assert errors == {"sender": ["This is not a sender address of this sending account."]}


def test_an_unverified_sender_is_refused(api: Api) -> None:
    SenderAddressFactory(sending_account=api.account, email="pending@alpha.example")

    errors = errors_of(api.send(api.body(sender="pending@alpha.example")))

    assert errors == {
        "sender": ["This sender address is not verified yet: click the link in the e-mail we sent to it."]
    }


def test_an_account_without_a_verified_sender_is_told_so(api: Api, tenant: Tenant) -> None:
    give_credits(tenant.account_org)
    caller = api_for(tenant.account_org, api.sender, api.template)

    errors = errors_of(caller.send(caller.body()))

    assert list(errors) == ["sender"]
    assert "no verified sender address" in errors["sender"][0]


def test_an_unknown_touchpoint_is_refused(api: Api) -> None:
    errors = errors_of(api.send(api.body(touchpoint="marketing")))

    assert errors == {"touchpoint": ['"marketing" is not a valid choice.']}


def test_unknown_fields_are_refused(api: Api) -> None:
    errors = errors_of(api.send(api.body(templte="welcome")))

    assert errors == {"templte": ["Unknown field."]}


def test_the_detail_repeats_every_field_message(api: Api) -> None:
    response = api.send({"template": "nope", "to": "x"})

    detail = response.json()["detail"]
    assert "template: No template" in detail
    assert "to: Enter a valid e-mail address" in detail


def test_a_body_that_is_not_an_object_is_refused(api: Api) -> None:
    response = api.send(["welcome"])

    assert response.status_code == 400
    assert response.json()["errors"] == {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}


def test_malformed_json_is_refused(api: Api) -> None:
    response = api.send(None, raw_body='{"template": ')

    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_a_form_post_is_refused_as_unsupported(api: Api) -> None:
    response = api.http.post("/api/v1/messages", {"template": "welcome"}, headers=api.headers())

    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


# --- refusals of a valid request ----------------------------------------------------------------------


def test_a_suspended_account_is_refused_with_403(api: Api) -> None:
    SendingAccount.objects.filter(pk=api.account.pk).update(standing=SendingAccount.Standing.SUSPENDED)

    response = api.send(api.body())

    assert response.status_code == 403
    assert response.json()["code"] == "account_suspended"
    assert "suspended" in response.json()["detail"]
    assert not Message.objects.exists()


def test_promotional_mail_on_probation_is_refused_with_403(api: Api) -> None:
    SendingAccount.objects.filter(pk=api.account.pk).update(standing=SendingAccount.Standing.PROBATION)

    response = api.send(api.body(touchpoint="promotional"))

    assert response.status_code == 403
    assert response.json()["code"] == "account_standing"
    assert not Message.objects.exists()


def test_transactional_mail_on_probation_goes_out(api: Api) -> None:
    SendingAccount.objects.filter(pk=api.account.pk).update(standing=SendingAccount.Standing.PROBATION)

    assert api.send(api.body()).status_code == 202


def test_without_a_plan_the_send_is_refused_with_402(tenant: Tenant) -> None:
    sender = VerifiedSenderFactory(sending_account=tenant.account_b, email="ok@beta.example")
    caller = api_for(tenant.account_b, sender, make_template(tenant.account_b))

    response = caller.send(caller.body())

    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "no_plan"
    assert body["detail"]
    assert not Message.objects.exists()


# --- GET /api/v1/messages/{id} ----------------------------------------------------------------------------


def test_it_shows_a_message_with_its_events(api: Api) -> None:
    message = make_message(api, status=Message.Status.DELIVERED, sent_at=timezone.now())
    first = MessageEvent.objects.create(message=message, type="delivery", at=timezone.now() - timedelta(minutes=2))
    MessageEvent.objects.create(message=message, type="open", data={"user_agent": "Mail"})

    response = api.get(message.pk)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == message.pk
    assert body["status"] == "delivered"
    assert body["to"] == "ada@example.com"
    assert body["template"] == {"id": api.template.pk, "slug": "welcome"}
    assert body["sender"] == "news@alpha.example"
    assert body["touchpoint"] == "transactional"
    assert body["error"] == ""
    assert [e["type"] for e in body["events"]] == ["delivery", "open"]
    assert body["events"][0]["at"] == first.at.isoformat().replace("+00:00", "Z")
    assert body["events"][1]["data"] == {"user_agent": "Mail"}
    assert "token" not in body


def test_a_message_being_reconciled_shows_as_sending(api: Api) -> None:
    message = make_message(api, status=Message.Status.UNKNOWN)

    assert api.get(message.pk).json()["status"] == "sending"


def test_a_failed_message_shows_why(api: Api) -> None:
    message = make_message(api, status=Message.Status.FAILED, error="Message rejected: address blacklisted")

    body = api.get(message.pk).json()

    assert body["status"] == "failed"
    assert body["error"] == "Message rejected: address blacklisted"


def test_a_message_of_another_account_of_the_same_organisation_is_not_found(api: Api, tenant: Tenant) -> None:
    theirs = Message.objects.create(
        organisation=tenant.organisation,
        sending_account=tenant.account_b,
        template=api.template,
        sender=tenant.sender_b,
        to_email="secret@example.com",
    )

    response = api.get(theirs.pk)

    assert response.status_code == 404
    assert response.json() == {"detail": "No message with this id in this sending account."}


def test_an_unknown_message_is_not_found(api: Api) -> None:
    assert api.get(987654).status_code == 404


def test_reading_a_message_takes_a_bounded_number_of_queries(api: Api, django_assert_max_num_queries: Any) -> None:
    message = make_message(api)
    for kind in ("delivery", "open", "click", "click"):
        MessageEvent.objects.create(message=message, type=kind)

    # the key (+ last-used), the message with template and sender, its events
    with django_assert_max_num_queries(4):
        assert api.get(message.pk).status_code == 200


# --- attribution to a campaign ------------------------------------------------------------------------------


def _campaign_of(account: SendingAccount, name: str = "Spring sale") -> Any:
    from tests.campaigns.fixtures_segments import campaign

    return campaign(account, name)


def test_a_message_may_be_attributed_to_a_campaign_of_its_account_without_joining_its_bulk_run(api: Api) -> None:
    from campaigns.sending import campaign_progress

    spring = _campaign_of(api.account)

    response = api.send(api.body(campaign=spring.pk))

    assert response.status_code == 202
    message = Message.objects.get()
    # Attributed in the reserved data key, not through the bulk pipeline's foreign key.
    assert message.campaign_id is None
    assert message.data == {"first_name": "Ada", "_campaign": spring.pk}
    assert campaign_progress(spring.pk)["total"] == 0
    # Its own credit, not the campaign's reservation.
    assert message.reservation is not None
    assert message.reservation.quantity == 1
    spring.refresh_from_db()
    assert spring.reservation_id is None
    assert api.get(message.pk).json()["campaign"] == spring.pk


def test_the_get_shows_the_campaign_of_a_bulk_message_and_null_without_one(api: Api) -> None:
    spring = _campaign_of(api.account)
    bulk = make_message(api, campaign=spring)
    single = make_message(api, to_email="bob@example.com")

    assert api.get(bulk.pk).json()["campaign"] == spring.pk
    assert api.get(single.pk).json()["campaign"] is None


def test_a_campaign_of_another_account_of_the_organisation_is_not_found(api: Api, tenant: Tenant) -> None:
    theirs = _campaign_of(tenant.account_b)

    errors = errors_of(api.send(api.body(campaign=theirs.pk)))

    assert errors == {"campaign": ["Campaign not found in this sending account."]}
    assert not Message.objects.exists()


def test_a_campaign_of_another_organisation_is_not_found(api: Api, outsider: User) -> None:
    theirs = _campaign_of(SendingAccount.objects.get(organisation__memberships__user=outsider))

    errors = errors_of(api.send(api.body(campaign=theirs.pk)))

    assert errors == {"campaign": ["Campaign not found in this sending account."]}
    assert not Message.objects.exists()


@pytest.mark.parametrize("value", [987654, 0, "spring", True, [1]])
def test_the_campaign_must_be_the_id_of_an_existing_campaign(api: Api, value: Any) -> None:
    errors = errors_of(api.send(api.body(campaign=value)))

    assert list(errors) == ["campaign"]
    assert not Message.objects.exists()


def test_a_null_campaign_is_no_attribution(api: Api) -> None:
    response = api.send({**api.body(), "campaign": None})

    assert response.status_code == 202
    assert Message.objects.get().data == {"first_name": "Ada"}


@pytest.mark.parametrize("key", ["_campaign", "_anything"])
def test_merge_data_keys_starting_with_an_underscore_are_reserved(api: Api, key: str) -> None:
    spring = _campaign_of(api.account)

    errors = errors_of(api.send(api.body(data={"first_name": "Ada", key: spring.pk})))

    assert errors == {"data": [f"Keys starting with “_” are reserved for XES; rename “{key}”."]}
    assert not Message.objects.exists()


def test_the_service_refuses_a_forged_attribution_and_another_accounts_campaign(api: Api, tenant: Tenant) -> None:
    from accounts.services import ServiceError
    from campaigns.sending import queue_triggered

    with pytest.raises(ServiceError, match="“_campaign” is reserved"):
        queue_triggered(api.account, api.template, "ada@example.com", {"_campaign": 1})
    with pytest.raises(ServiceError, match="another sending account"):
        queue_triggered(api.account, api.template, "ada@example.com", {}, campaign=_campaign_of(tenant.account_b))
    assert not Message.objects.exists()


def test_a_repeat_with_the_same_key_must_name_the_same_campaign(api: Api) -> None:
    spring, autumn = _campaign_of(api.account), _campaign_of(api.account, "Autumn")
    first = api.send(api.body(campaign=spring.pk), **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202

    again = api.send(api.body(campaign=spring.pk), **{"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    for changed in (api.body(campaign=autumn.pk), api.body()):
        response = api.send(changed, **{"Idempotency-Key": "k-1"})
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"
    assert Message.objects.count() == 1
