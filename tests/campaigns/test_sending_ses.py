"""The SES provider's fast send path against the local SES v2 stand-in, and the sending pipeline
with concurrent provider calls: exactly once, and never faster than the shared rate limit."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HeadersDict

from campaigns.benchmarks.ses_standin import StandinServer, State, serve
from campaigns.models import Message
from campaigns.sending import queue_campaign
from campaigns.sending.providers import RecordingProvider
from campaigns.sending.ratelimit import Limiter
from campaigns.sending.worker import finish_campaigns, run_batch, send_threads
from deliverability.models import ProviderSetup
from deliverability.providers import MessageRejected, ProviderError, SendingPaused, Throttled, ensure_setup
from deliverability.providers.ses import SesProvider
from tests.campaigns.fixtures_sending import (
    Setup,
    consumed_for,
    make_campaign,
    outstanding_for,
    recording_fixture,  # noqa: F401 - fixture "recording"
    setup_fixture,  # noqa: F401 - fixture "setup"
    statuses,
)

REGION = "eu-central-1"


@pytest.fixture(name="standin")
def standin_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandinServer, State]]:
    """The stand-in in a thread of this process; boto3 (and the fast path) pointed at it."""
    server, state = serve(keep_bodies=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield server, state
    server.shutdown()
    server.server_close()


def provider_setup(tenant: str = "xes-acct-7") -> ProviderSetup:
    return ProviderSetup(sending_account_id=7, provider="ses", configuration_set="xes-acct-7", tenant=tenant)


def send(provider: SesProvider, raw: bytes = b"Subject: Hi\r\n\r\nHello\r\n", **tags: str) -> str:
    return provider.send_raw(
        provider_setup(), raw, from_address="news@alpha.example", recipients=["reader@example.net"], tags=tags
    )


# --- the fast send path ---------------------------------------------------------------------------


def test_fast_path_sends_the_same_parameters_as_boto3(standin: tuple[StandinServer, State]) -> None:
    _server, state = standin
    provider = SesProvider(region=REGION)
    raw = "Subject: Grüße\r\n\r\nHallo\r\n".encode()

    message_id = send(provider, raw, campaign="12", **{"message id": "m-42@x.y/z"})

    assert provider.fast_send is True
    assert message_id.startswith("0100018f-standin-")
    [body] = state.bodies
    assert body == {
        "FromEmailAddress": "news@alpha.example",
        "Destination": {"ToAddresses": ["reader@example.net"]},
        "Content": {"Raw": {"Data": base64.b64encode(raw).decode()}},
        "ConfigurationSetName": "xes-acct-7",
        "EmailTags": [{"Name": "campaign", "Value": "12"}, {"Name": "message_id", "Value": "m-42_x_y_z"}],
        "TenantName": "xes-acct-7",
    }


def test_fast_path_is_signed_with_sigv4_for_ses(standin: tuple[StandinServer, State]) -> None:
    provider = SesProvider(region=REGION)
    request = provider._fast_sender().request(
        {
            "FromEmailAddress": "a@b.example",
            "Destination": {"ToAddresses": ["c@d.example"]},
            "Content": {"Raw": {"Data": b"x"}},
        }
    )
    authorization = request.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert f"/{REGION}/ses/aws4_request" in authorization
    assert request.url.endswith("/v2/email/outbound-emails")


def test_fast_path_maps_the_stand_ins_throttling_to_throttled(standin: tuple[StandinServer, State]) -> None:
    _server, state = standin
    state.configure({"rate": 1, "burst": 0})
    provider = SesProvider(region=REGION)
    send(provider)
    with pytest.raises(Throttled) as caught:
        send(provider)
    assert caught.value.code == "TooManyRequestsException"
    assert caught.value.detail == "Maximum sending rate exceeded."
    assert state.throttled == 1


def _answer(provider: SesProvider, status: int, code: str, message: str) -> None:
    """Answer the next SendEmail through the client's ``before-send`` event, as SES would."""

    def handler(request: Any, **kwargs: Any) -> AWSResponse:
        headers = HeadersDict({"x-amzn-ErrorType": f"{code}:", "Content-Type": "application/json"})
        raw = type("Raw", (), {"stream": lambda self, **kw: iter([b""])})()
        response = AWSResponse(request.url, status, headers, raw)
        response._content = f'{{"message": "{message}"}}'.encode()
        return response

    provider.client.meta.events.register_first("before-send.sesv2.SendEmail", handler)


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        ("TooManyRequestsException", 429, "Maximum sending rate exceeded.", Throttled),
        ("TooManyRequestsException", 429, "Daily message quota exceeded.", SendingPaused),
        ("LimitExceededException", 400, "Daily message quota exceeded.", SendingPaused),
        ("AccountSendingPausedException", 400, "Sending is paused for this account.", SendingPaused),
        ("SendingPausedException", 400, "Sending is paused for this configuration set.", SendingPaused),
        ("AccountSuspendedException", 400, "Account suspended.", SendingPaused),
        ("MessageRejected", 400, "Email address is not verified.", MessageRejected),
        ("MailFromDomainNotVerifiedException", 400, "MAIL FROM domain not verified.", MessageRejected),
        ("BadRequestException", 400, "Illegal address", MessageRejected),
        ("InternalFailure", 500, "Oops", ProviderError),
    ],
)
def test_fast_path_errors_map_like_boto3s(
    standin: tuple[StandinServer, State], code: str, status: int, message: str, expected: type[ProviderError]
) -> None:
    provider = SesProvider(region=REGION)
    _answer(provider, status, code, message)
    with pytest.raises(ProviderError) as caught:
        send(provider)
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.detail == message
    if expected is MessageRejected:
        assert caught.value.retryable is False
    if status >= 500 or expected is Throttled:
        assert caught.value.retryable is True


def test_fast_path_unreachable_endpoint_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    with pytest.raises(ProviderError) as caught:
        send(SesProvider(region=REGION))
    assert caught.value.code == "EndpointConnectionError"
    assert caught.value.retryable is True


def test_a_given_client_keeps_boto3s_send_email() -> None:
    provider = SesProvider(client=object(), region=REGION)
    assert provider.fast_send is False


# --- the pipeline with concurrent provider calls --------------------------------------------------


def test_concurrent_sends_keep_exactly_once_and_exact_credits(setup: Setup, recording: RecordingProvider) -> None:
    recording.send_concurrency = 8  # type: ignore[attr-defined]
    recording.configure(delay_ms=20, throttle_fraction=0.2, reject=["spring7@example.net"])
    campaign = make_campaign(setup, 120)
    queue_campaign(campaign.pk)
    assert send_threads(recording) == 8

    from tests.campaigns.test_sending_pipeline import _fast_backoff, drain

    with _fast_backoff():
        drain(setup.account.pk, rounds=2000)

    calls = recording.calls()
    assert recording.throttled_count() > 0
    assert len(calls) == len(set(calls)) == 119
    assert statuses(campaign) == {"sent": 119, "failed": 1}
    assert consumed_for(setup) == 119
    assert outstanding_for(setup) == 0


def test_sending_paused_during_concurrent_sends_requeues_the_rest(setup: Setup, recording: RecordingProvider) -> None:
    recording.send_concurrency = 8  # type: ignore[attr-defined]
    recording.configure(paused=True, delay_ms=5)
    campaign = make_campaign(setup, 40)
    queue_campaign(campaign.pk)

    run_batch(setup.account.pk)

    campaign.refresh_from_db()
    assert campaign.status == "paused"
    assert statuses(campaign) == {"queued": 40}
    assert recording.calls() == []
    assert outstanding_for(setup) == 0


def test_an_interrupted_batch_leaves_only_calls_in_flight_leased(setup: Setup, recording: RecordingProvider) -> None:
    recording.send_concurrency = 4  # type: ignore[attr-defined]
    recording.configure(delay_ms=50)
    campaign = make_campaign(setup, 40)
    queue_campaign(campaign.pk)
    from campaigns.sending import worker

    original = worker.Batch.collect
    rounds = {"n": 0}

    def interrupt(self: worker.Batch, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        rounds["n"] += 1
        if rounds["n"] == 45:  # after the last submission, while sends are in flight
            raise KeyboardInterrupt

    worker.Batch.collect = interrupt  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            run_batch(setup.account.pk)
    finally:
        worker.Batch.collect = original  # type: ignore[method-assign]

    counts = statuses(campaign)
    calls = recording.calls()
    # every accepted call is recorded as sent (the batch waited for its calls in flight), the rest
    # went back to the queue; nothing is lost or sent twice
    assert counts.get("sent", 0) == len(calls) == len(set(calls))
    assert counts.get("sent", 0) + counts.get("queued", 0) + counts.get("sending", 0) == 40
    assert set(Message.objects.filter(campaign=campaign, status="sent").values_list("pk", flat=True)) == set(calls)


@pytest.mark.django_db(transaction=True)
def test_concurrent_ses_sends_respect_the_limit_at_the_stand_in(standin: tuple[StandinServer, State]) -> None:
    """The real SES provider against the stand-in (20/s, 50 ms latency): never more than 20 arrivals
    in any second, no throttling, everything sent once."""
    from tests.campaigns.fixtures_sending import make_setup

    _server, state = standin
    state.configure({"rate": 20, "latency_ms": 50, "burst": 0.1})
    setup = make_setup()
    ensure_setup(setup.account)  # the sandbox's, turned into an SES set-up
    assert ProviderSetup.objects.filter(sending_account=setup.account).update(provider="ses", tenant="") == 1
    import django_rq

    redis = django_rq.get_connection("sending")
    for key in redis.scan_iter("xes:sending:*"):
        redis.delete(key)
    campaign = make_campaign(setup, 50)
    queue_campaign(campaign.pk)

    for _n in range(20):
        if not run_batch(setup.account.pk):
            break
    finish_campaigns(setup.account.pk)

    stamps = sorted(state.accepted)
    assert len(stamps) == 50, (statuses(campaign), list(Message.objects.values_list("error", flat=True)[:3]))
    assert state.throttled == 0
    per_second: dict[int, int] = {}
    for stamp in stamps:
        per_second[int(stamp)] = per_second.get(int(stamp), 0) + 1
    assert max(per_second.values()) <= 20
    # any one-second window, not only whole seconds: one more for the GIL's thread-switch jitter
    # (the stand-in runs in this process here; ``make bench`` runs it in a process of its own)
    for i, first in enumerate(stamps):
        assert sum(1 for later in stamps[i:] if later - first < 1.0) <= 21
    assert stamps[-1] - stamps[0] >= 49 / 20 * 0.95  # it did not simply send slower than allowed...
    assert stamps[-1] - stamps[0] <= 49 / 20 / 0.9  # ...nor much slower
    assert statuses(campaign) == {"sent": 50}


def test_limiter_books_only_for_waiting_threads(setup: Setup, recording: RecordingProvider) -> None:
    recording.configure(max_send_rate=100)
    limiter = Limiter(ensure_setup(setup.account), recording)
    limiter.wait_for_slot(want=50)
    # one thread waited: one slot booked, not fifty slots that nobody would use on time
    assert limiter.slots == 0


def test_a_prepared_send_is_signed_before_and_sent_only_when_called(standin: tuple[StandinServer, State]) -> None:
    _server, state = standin
    provider = SesProvider(region=REGION)

    call = provider.prepare_send(
        provider_setup(),
        b"Subject: Hi\r\n\r\nHello\r\n",
        from_address="a@b.example",
        recipients=["c@d.example"],
        tags={},
    )
    assert state.accepted == []  # nothing has left yet: only encoded and signed

    message_id = call()
    assert message_id.startswith("0100018f-standin-")
    assert len(state.accepted) == 1
    assert state.bodies[0]["Destination"] == {"ToAddresses": ["c@d.example"]}


def test_a_slot_that_a_thread_wakes_too_late_for_is_given_up(setup: Setup, recording: RecordingProvider) -> None:
    recording.configure(max_send_rate=100)  # a slot every ~10 ms; late by more than 10 ms -> given up
    woke_late: list[float] = []

    def oversleeping(seconds: float) -> None:
        # The first wake-up comes 50 ms late, as when another thread held the interpreter.
        time.sleep(seconds + (0.05 if not woke_late else 0))
        woke_late.append(seconds)

    limiter = Limiter(ensure_setup(setup.account), recording, sleep=oversleeping)
    limiter.wait_for_slot()  # first slot: now, no sleep
    limiter.wait_for_slot()  # second slot: ~10 ms ahead, woken 50 ms late -> dropped, a third one taken
    assert limiter.dropped >= 1
    assert len(woke_late) >= 1


def test_a_raised_rate_re_spaces_the_slots_already_booked_ahead(setup: Setup, recording: RecordingProvider) -> None:
    import django_rq

    recording.configure(max_send_rate=1000)
    account_id = setup.account.pk
    redis = django_rq.get_connection("sending")
    seconds, micros = redis.time()
    now_us = seconds * 1_000_000 + micros
    # Slots booked 200 ms ahead at 10/s (one every 100 ms), as before a raise to 1,000/s.
    redis.set(f"xes:sending:tat:{account_id}", str(now_us + 200_000))
    redis.set(f"xes:sending:interval:{account_id}", "100000")

    limiter = Limiter(ensure_setup(setup.account), recording, sleep=lambda _seconds: None)
    limiter.wait_for_slot()  # books and returns at once (no sleeping), so the booking is seen as made

    seconds, micros = redis.time()
    ahead_us = int(redis.get(f"xes:sending:tat:{account_id}")) - (seconds * 1_000_000 + micros)
    # Re-spaced at ~1 ms per slot the booked time shrinks to a few ms; unscaled it would still be ~200 ms.
    assert ahead_us < 20_000
    assert int(redis.get(f"xes:sending:interval:{account_id}")) == round(limiter.interval * 1_000_000)


def test_an_account_on_probation_sends_at_a_share_of_its_rate(setup: Setup, recording: RecordingProvider) -> None:
    from accounts.models import SendingAccount
    from campaigns.sending.worker import Batch, Builder

    recording.configure(max_send_rate=100)
    provider_setup = ensure_setup(setup.account)
    normal = Batch(setup.account, provider_setup, "w", Builder()).limiter
    normal.wait_for_slot()

    setup.account.standing = SendingAccount.Standing.PROBATION
    throttled = Batch(setup.account, provider_setup, "w", Builder()).limiter
    throttled.wait_for_slot()

    assert throttled.factor == 0.5
    assert throttled.interval == pytest.approx(2 * normal.interval, rel=0.01)


def test_a_read_timeout_is_an_unknown_outcome_not_a_retry(standin: tuple[StandinServer, State]) -> None:
    """SES may have taken a message whose answer never came: the provider says so, and the pipeline
    leaves the row leased for reconciling instead of sending it a second time."""
    _server, state = standin
    state.configure({"latency_ms": 600})
    from deliverability.providers import OutcomeUnknown
    from deliverability.providers import ses as ses_module

    saved = ses_module.SEND_READ_TIMEOUT
    ses_module.SEND_READ_TIMEOUT = 0.2
    try:
        provider = SesProvider(region=REGION)
        with pytest.raises(OutcomeUnknown):
            send(provider)
    finally:
        ses_module.SEND_READ_TIMEOUT = saved
    assert len(state.accepted) == 1  # the stand-in took it: a retry would have been a second send


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_never_resends_a_message_whose_answer_timed_out(
    standin: tuple[StandinServer, State], monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.sending import ratelimit
    from deliverability.providers import ses as ses_module
    from tests.campaigns.fixtures_sending import make_setup

    monkeypatch.setattr(ratelimit, "_providers", {})  # a provider made here, with the short timeout

    _server, state = standin
    state.configure({"latency_ms": 600})
    setup = make_setup()
    ensure_setup(setup.account)
    assert ProviderSetup.objects.filter(sending_account=setup.account).update(provider="ses", tenant="") == 1
    campaign = make_campaign(setup, 3)
    queue_campaign(campaign.pk)

    saved = ses_module.SEND_READ_TIMEOUT
    ses_module.SEND_READ_TIMEOUT = 0.2
    try:
        claimed = run_batch(setup.account.pk)
        again = run_batch(setup.account.pk)  # nothing is due again: the rows are not requeued
    finally:
        ses_module.SEND_READ_TIMEOUT = saved

    assert claimed == 3
    assert again == 0
    assert len(state.accepted) == 3  # one call each, no second
    assert statuses(campaign) == {"sending": 3}  # leased, for the reconciler and SES's events
