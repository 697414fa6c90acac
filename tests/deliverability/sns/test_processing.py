"""The job behind ``POST /webhooks/ses/``: each stored SNS message is processed once; SES events are
announced with ``provider_event`` like the sandbox announces its own; odd ones are kept and marked
ignored; subscriptions are confirmed through the SNS API, never by requesting ``SubscribeURL``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import django_rq
import pytest
from botocore.stub import Stubber
from django.db import connection
from django.utils import timezone
from moto import mock_aws

from accounts.models import SendingAccount
from deliverability.models import ProviderSetup, SnsNotification, Suppression
from deliverability.providers.ses import SesProvider
from deliverability.signals import provider_event
from deliverability.webhooks import processing, sns
from tests.conftest import Tenant
from tests.deliverability.sns.conftest import Post
from tests.deliverability.sns.signing import (
    OTHER_TOPIC,
    REGION,
    TOPIC,
    SigningIdentity,
    confirmation,
    notification,
    ses_event,
)

pytestmark = pytest.mark.django_db
Outcome = SnsNotification.Outcome
RunJobs = Callable[[], int]


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """Run on-commit callbacks (jobs are queued when the transaction commits) as after a real commit."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def deliver(post: Post, identity: SigningIdentity, run_jobs: RunJobs) -> Callable[..., SnsNotification]:
    """POST a signed notification carrying ``event`` and run the queued job; returns the stored row."""

    def _deliver(event: dict[str, Any] | str, **kwargs: Any) -> SnsNotification:
        message = notification(event, identity, **kwargs)
        assert post(message).status_code == 200
        run_jobs()
        return SnsNotification.objects.get(sns_message_id=message["MessageId"])

    return _deliver


# --- events are announced once ---------------------------------------------------------------------


def test_an_ses_event_is_announced_like_the_sandbox_does(tenant: Tenant, deliver: Any, announced: list[Any]) -> None:
    event = ses_event("Delivery", account_id=tenant.account_a.pk)
    stored = deliver(event)
    assert announced == [{"sender": SesProvider, "event": event, "sending_account_id": tenant.account_a.pk}]
    stored.refresh_from_db()
    assert stored.outcome == Outcome.PROCESSED
    assert stored.event_type == "Delivery"
    assert stored.provider_message_id == event["mail"]["messageId"]
    assert stored.sending_account_id == tenant.account_a.pk
    assert stored.processed_at is not None


@pytest.mark.parametrize(
    "event_type",
    [
        "Send",
        "Delivery",
        "Bounce",
        "Complaint",
        "Reject",
        "DeliveryDelay",
        "RenderingFailure",
        "Open",
        "Click",
        "Subscription",
    ],
)
def test_every_ses_event_type_is_announced(tenant: Tenant, deliver: Any, announced: list[Any], event_type: str) -> None:
    deliver(ses_event(event_type, account_id=tenant.account_a.pk))
    assert [a["event"]["eventType"] for a in announced] == [event_type]


def test_a_processed_notification_is_never_announced_again(
    tenant: Tenant, deliver: Any, announced: list[Any], run_jobs: RunJobs
) -> None:
    stored = deliver(ses_event("Delivery", account_id=tenant.account_a.pk))
    assert processing.process(stored.pk) == ""
    django_rq.get_queue("default").enqueue(processing.JOB, stored.pk)
    run_jobs()
    assert len(announced) == 1


def test_a_replayed_message_is_announced_once(
    tenant: Tenant, post: Post, identity: SigningIdentity, run_jobs: RunJobs, announced: list[Any]
) -> None:
    message = notification(ses_event("Delivery", account_id=tenant.account_a.pk), identity)
    for _ in range(3):
        post(message)
        run_jobs()
    assert len(announced) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_jobs_for_one_notification_announce_it_once(
    tenant: Tenant, post: Post, identity: SigningIdentity, announced: list[Any]
) -> None:
    post(notification(ses_event("Delivery", account_id=tenant.account_a.pk), identity))
    notification_id = SnsNotification.objects.get().pk
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def work() -> None:
        try:
            barrier.wait()
            outcomes.append(processing.process(notification_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [""] * 5 + [Outcome.PROCESSED]
    assert len(announced) == 1


def test_the_legacy_notification_format_is_understood(tenant: Tenant, deliver: Any, announced: list[Any]) -> None:
    event = ses_event("Bounce", account_id=tenant.account_a.pk)
    legacy = {"notificationType": event.pop("eventType"), **event}
    deliver(legacy)
    assert announced[0]["event"]["eventType"] == "Bounce"


def test_a_failing_receiver_is_recorded_and_the_others_still_run(
    tenant: Tenant, deliver: Any, announced: list[Any]
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    provider_event.connect(broken, weak=False, dispatch_uid="tests.broken")
    try:
        stored = deliver(ses_event("Delivery", account_id=tenant.account_a.pk))
    finally:
        provider_event.disconnect(dispatch_uid="tests.broken")
    stored.refresh_from_db()
    assert stored.outcome == Outcome.PROCESSED
    assert "receiver bug" in stored.error
    assert len(announced) == 1


# --- what is kept but ignored ----------------------------------------------------------------------


def _ignored(stored: SnsNotification, announced: list[Any], why: str) -> None:
    stored.refresh_from_db()
    assert stored.outcome == Outcome.IGNORED
    assert why in stored.error
    assert stored.body  # kept raw for the team
    assert announced == []


def test_an_unknown_event_type_is_kept_and_ignored(tenant: Tenant, deliver: Any, announced: list[Any]) -> None:
    stored = deliver(ses_event("Teleport", account_id=tenant.account_a.pk))
    _ignored(stored, announced, "unknown event type")
    assert stored.event_type == "Teleport"


@pytest.mark.parametrize("message", ["this is not JSON", "{broken", "<html>"])
def test_a_message_that_is_not_json_is_ignored(deliver: Any, announced: list[Any], message: str) -> None:
    _ignored(deliver(message), announced, "not JSON")


@pytest.mark.parametrize(
    "message",
    [[1, 2], {"hello": "world"}, {"eventType": 7}, {"eventType": "Delivery"}, {"eventType": "Delivery", "mail": "x"}],
)
def test_json_that_is_no_ses_event_is_ignored(deliver: Any, announced: list[Any], message: Any) -> None:
    stored = deliver(json.dumps(message))
    stored.refresh_from_db()
    assert stored.outcome == Outcome.IGNORED
    assert announced == []


@pytest.mark.parametrize("tag", ["999999999", "abc", "1e3", "-1", "٣"])
def test_an_event_of_no_account_of_ours_is_ignored(deliver: Any, announced: list[Any], tag: str) -> None:
    event = ses_event("Delivery")
    event["mail"]["tags"]["xes_account"] = [tag]
    _ignored(deliver(event), announced, "no sending account")


# --- which account sent it ------------------------------------------------------------------------


def _setup(account: SendingAccount, name: str) -> ProviderSetup:
    return ProviderSetup.objects.create(sending_account=account, provider="ses", configuration_set=name)


def test_the_configuration_set_names_the_account_without_a_tag(
    tenant: Tenant, deliver: Any, announced: list[Any]
) -> None:
    _setup(tenant.account_b, "xes-acct-b")
    deliver(ses_event("Delivery", configuration_set="xes-acct-b"))
    assert announced[0]["sending_account_id"] == tenant.account_b.pk


def test_the_configuration_set_wins_over_a_contradicting_tag(
    tenant: Tenant, deliver: Any, announced: list[Any]
) -> None:
    _setup(tenant.account_b, "xes-acct-b")
    deliver(ses_event("Delivery", account_id=tenant.account_a.pk, configuration_set="xes-acct-b"))
    assert announced[0]["sending_account_id"] == tenant.account_b.pk


def test_an_unknown_configuration_set_leaves_the_tag(tenant: Tenant, deliver: Any, announced: list[Any]) -> None:
    deliver(ses_event("Delivery", account_id=tenant.account_a.pk, configuration_set="someone-else"))
    assert announced[0]["sending_account_id"] == tenant.account_a.pk


def test_an_ambiguous_configuration_set_names_no_account(tenant: Tenant, deliver: Any, announced: list[Any]) -> None:
    _setup(tenant.account_a, "shared")
    _setup(tenant.account_b, "shared")
    _ignored(deliver(ses_event("Delivery", configuration_set="shared")), announced, "no sending account")


# --- suppression from events (the deliverability receiver) ---------------------------------------------


def _suppressed(account: SendingAccount) -> dict[str, str]:
    return dict(Suppression.objects.filter(sending_account=account).values_list("email", "reason"))


def test_a_permanent_bounce_suppresses_the_address(tenant: Tenant, deliver: Any) -> None:
    deliver(ses_event("Bounce", account_id=tenant.account_a.pk, recipients=("Gone@Example.NET",)))
    assert _suppressed(tenant.account_a) == {"Gone@example.net": Suppression.Reason.HARD_BOUNCE}
    assert _suppressed(tenant.account_b) == {}


def test_a_transient_bounce_suppresses_nothing(tenant: Tenant, deliver: Any) -> None:
    deliver(ses_event("Bounce", account_id=tenant.account_a.pk, bounce_type="Transient"))
    deliver(ses_event("Bounce", account_id=tenant.account_a.pk, bounce_type="Undetermined"))
    assert _suppressed(tenant.account_a) == {}


def test_a_complaint_suppresses_the_address(tenant: Tenant, deliver: Any) -> None:
    deliver(ses_event("Complaint", account_id=tenant.account_a.pk, recipients=("angry@example.net",)))
    assert _suppressed(tenant.account_a) == {"angry@example.net": Suppression.Reason.COMPLAINT}


def test_a_delivery_after_a_bounce_changes_no_suppression(tenant: Tenant, deliver: Any, announced: list[Any]) -> None:
    bounce = ses_event("Bounce", account_id=tenant.account_a.pk, recipients=("gone@example.net",))
    deliver(bounce)
    delivery = ses_event("Delivery", account_id=tenant.account_a.pk, recipients=("gone@example.net",))
    delivery["mail"]["messageId"] = bounce["mail"]["messageId"]
    stored = deliver(delivery)
    assert _suppressed(tenant.account_a) == {"gone@example.net": Suppression.Reason.HARD_BOUNCE}
    assert stored.outcome == Outcome.PROCESSED
    assert [a["event"]["eventType"] for a in announced] == ["Bounce", "Delivery"]


def test_a_replayed_bounce_suppresses_once(
    tenant: Tenant, post: Post, identity: SigningIdentity, run_jobs: RunJobs
) -> None:
    message = notification(ses_event("Bounce", account_id=tenant.account_a.pk), identity)
    for _ in range(2):
        post(message)
        run_jobs()
    assert Suppression.objects.filter(sending_account=tenant.account_a).count() == 1


# --- the sweep, reprocessing and retention --------------------------------------------------------


def _stored(identity: SigningIdentity, event: dict[str, Any], **fields: Any) -> SnsNotification:
    message = notification(event, identity)
    row = SnsNotification.objects.create(
        sns_message_id=message["MessageId"], topic_arn=TOPIC, type="Notification", body=json.dumps(message)
    )
    if fields:
        SnsNotification.objects.filter(pk=row.pk).update(**fields)
        row.refresh_from_db()
    return row


def test_the_sweep_queues_a_notification_whose_job_was_lost(
    tenant: Tenant, identity: SigningIdentity, run_jobs: RunJobs, announced: list[Any], committed: Any
) -> None:
    lost = _stored(identity, ses_event("Delivery", account_id=tenant.account_a.pk))
    fresh = _stored(identity, ses_event("Delivery", account_id=tenant.account_a.pk))
    SnsNotification.objects.filter(pk=lost.pk).update(received_at=timezone.now() - timedelta(minutes=5))
    with committed():
        assert processing.requeue_stalled() == 1  # the fresh one is left: its job may still come
    run_jobs()
    assert SnsNotification.objects.get(pk=lost.pk).outcome == Outcome.PROCESSED
    assert SnsNotification.objects.get(pk=fresh.pk).outcome == Outcome.PENDING
    assert len(announced) == 1


def test_the_sweep_releases_the_claim_of_a_dead_worker(
    tenant: Tenant, identity: SigningIdentity, run_jobs: RunJobs, announced: list[Any], committed: Any
) -> None:
    old = timezone.now() - timedelta(minutes=15)
    dead = _stored(
        identity,
        ses_event("Delivery", account_id=tenant.account_a.pk),
        outcome=Outcome.PROCESSING,
        claimed_at=old,
        received_at=old,
        attempts=1,
    )
    with committed():
        processing.requeue_stalled()
    run_jobs()
    dead.refresh_from_db()
    assert dead.outcome == Outcome.PROCESSED
    assert dead.attempts == 2
    assert len(announced) == 1


def test_a_released_claim_cannot_be_finished_by_its_old_job(tenant: Tenant, identity: SigningIdentity) -> None:
    row = _stored(identity, ses_event("Delivery", account_id=tenant.account_a.pk))
    old = timezone.now() - timedelta(minutes=15)
    SnsNotification.objects.filter(pk=row.pk).update(outcome=Outcome.PROCESSING, claimed_at=old)
    row.refresh_from_db()
    processing.requeue_stalled()  # released: pending again, claimed_at cleared
    assert processing._finish(row, Outcome.PROCESSED) is False


def test_the_sweep_gives_up_after_too_many_attempts(
    tenant: Tenant, identity: SigningIdentity, announced: list[Any]
) -> None:
    old = timezone.now() - timedelta(minutes=15)
    row = _stored(
        identity,
        ses_event("Delivery", account_id=tenant.account_a.pk),
        outcome=Outcome.PROCESSING,
        claimed_at=old,
        attempts=processing.MAX_ATTEMPTS,
    )
    processing.requeue_stalled()
    row.refresh_from_db()
    assert row.outcome == Outcome.FAILED
    assert announced == []


def test_reprocessing_an_ignored_notification_after_the_cause_is_fixed(
    tenant: Tenant, deliver: Any, run_jobs: RunJobs, announced: list[Any], committed: Any
) -> None:
    stored = deliver(ses_event("Delivery", configuration_set="xes-late"))
    assert SnsNotification.objects.get(pk=stored.pk).outcome == Outcome.IGNORED
    _setup(tenant.account_a, "xes-late")
    with committed():
        assert processing.reprocess([stored.pk]) == 1
    run_jobs()
    assert SnsNotification.objects.get(pk=stored.pk).outcome == Outcome.PROCESSED
    assert [a["sending_account_id"] for a in announced] == [tenant.account_a.pk]


def test_reprocessing_leaves_processed_notifications_alone(
    tenant: Tenant, deliver: Any, run_jobs: RunJobs, announced: list[Any]
) -> None:
    stored = deliver(ses_event("Delivery", account_id=tenant.account_a.pk))
    assert processing.reprocess([stored.pk]) == 0
    run_jobs()
    assert len(announced) == 1


def test_old_finished_notifications_are_pruned(tenant: Tenant, identity: SigningIdentity) -> None:
    long_ago = timezone.now() - timedelta(days=40)
    old_done = _stored(identity, ses_event("Delivery"), outcome=Outcome.PROCESSED, received_at=long_ago)
    old_waiting = _stored(identity, ses_event("Delivery"), received_at=long_ago)
    recent = _stored(identity, ses_event("Delivery"), outcome=Outcome.IGNORED)
    assert processing.prune(timedelta(days=30)) == 1
    assert set(SnsNotification.objects.values_list("pk", flat=True)) == {old_waiting.pk, recent.pk}
    assert not SnsNotification.objects.filter(pk=old_done.pk).exists()


def test_pruning_never_goes_below_the_replay_window(identity: SigningIdentity) -> None:
    row = _stored(
        identity, ses_event("Delivery"), outcome=Outcome.PROCESSED, received_at=timezone.now() - timedelta(hours=30)
    )
    assert processing.prune(timedelta(hours=1)) == 0  # a replay of it would still be accepted by its age
    assert SnsNotification.objects.filter(pk=row.pk).exists()
    assert timedelta(hours=30) < sns.MAX_AGE * 2


# --- subscriptions ----------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def internal_url() -> Iterator[tuple[str, list[str]]]:
    """A URL on an internal address (a real server on 127.0.0.1) and the requests it received."""
    handler = type("Recorder", (_Recorder,), {"hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/latest/meta-data/iam", handler.hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def stubbed_sns(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, list[str]]]:
    """A real SNS client whose calls botocore's Stubber checks against the API model; the regions asked for."""
    client = boto3.client("sns", region_name=REGION)
    regions: list[str] = []

    def sns_client(region: str) -> Any:
        regions.append(region)
        return client

    monkeypatch.setattr(processing, "sns_client", sns_client)
    with Stubber(client) as stubber:
        yield stubber, regions
        stubber.assert_no_pending_responses()


def test_a_subscription_is_confirmed_through_the_api_and_subscribe_url_is_never_fetched(
    post: Post, identity: SigningIdentity, run_jobs: RunJobs, stubbed_sns: Any, internal_url: Any
) -> None:
    stubber, regions = stubbed_sns
    url, hits = internal_url
    message = confirmation(identity, subscribe_url=url, token="tok-123")
    stubber.add_response(
        "confirm_subscription",
        {"SubscriptionArn": f"{TOPIC}:5b0c9f8e-0000-4000-8000-000000000001"},
        {"TopicArn": TOPIC, "Token": "tok-123", "AuthenticateOnUnsubscribe": "true"},
    )
    assert post(message).status_code == 200
    run_jobs()
    stored = SnsNotification.objects.get()
    assert stored.outcome == Outcome.PROCESSED
    assert "5b0c9f8e" in stored.error
    assert regions == [REGION]
    assert hits == []  # the internal address was never requested


@mock_aws
def test_a_subscription_confirmation_against_moto(post: Post, identity: SigningIdentity, run_jobs: RunJobs) -> None:
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="xes-events")["TopicArn"]
    assert topic == TOPIC
    post(confirmation(identity))
    run_jobs()
    assert SnsNotification.objects.get().outcome == Outcome.PROCESSED


def test_a_failed_confirmation_can_be_reprocessed(
    post: Post, identity: SigningIdentity, run_jobs: RunJobs, stubbed_sns: Any, committed: Any
) -> None:
    stubber, _regions = stubbed_sns
    stubber.add_client_error("confirm_subscription", service_error_code="InternalError", http_status_code=500)
    stubber.add_response("confirm_subscription", {"SubscriptionArn": f"{TOPIC}:ok"})
    post(confirmation(identity))
    run_jobs()
    stored = SnsNotification.objects.get()
    assert stored.outcome == Outcome.FAILED
    assert "ConfirmSubscription failed" in stored.error
    with committed():
        processing.reprocess([stored.pk])
    run_jobs()
    assert SnsNotification.objects.get().outcome == Outcome.PROCESSED


def test_a_confirmation_for_a_topic_dropped_meanwhile_is_ignored(
    post: Post, identity: SigningIdentity, run_jobs: RunJobs, stubbed_sns: Any, settings: Any
) -> None:
    post(confirmation(identity, topic=OTHER_TOPIC))
    settings.SNS_TOPIC_ARNS = []
    run_jobs()  # the stubber has no response queued: any AWS call would fail the test
    assert SnsNotification.objects.get().outcome == Outcome.IGNORED


def test_a_confirmation_for_a_foreign_topic_is_forbidden_and_never_confirmed(
    post: Post, identity: SigningIdentity, run_jobs: RunJobs, stubbed_sns: Any, internal_url: Any
) -> None:
    url, hits = internal_url
    response = post(confirmation(identity, topic="arn:aws:sns:eu-central-1:999999999999:theirs", subscribe_url=url))
    assert response.status_code == 403
    assert run_jobs() == 0
    assert not SnsNotification.objects.exists()
    assert hits == []


def test_an_unsubscribe_confirmation_is_kept_and_ignored(
    post: Post, identity: SigningIdentity, run_jobs: RunJobs, stubbed_sns: Any, internal_url: Any
) -> None:
    url, hits = internal_url
    post(confirmation(identity, kind="UnsubscribeConfirmation", subscribe_url=url))
    run_jobs()
    stored = SnsNotification.objects.get()
    assert stored.type == SnsNotification.Type.UNSUBSCRIBE_CONFIRMATION
    assert stored.outcome == Outcome.IGNORED
    assert hits == []
