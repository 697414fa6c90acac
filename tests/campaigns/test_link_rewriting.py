"""Link rewriting at build time: which links are tracked, the open pixel, tracking on or off per
campaign / template / kind of mail, the branded tracking host, and a sent message's links working
end to end."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from typing import Any

import pytest
from django.conf import settings
from django.test import Client as HttpClient
from django.utils import timezone

from campaigns.models import Message, MessageEvent, TrackedLink, tracking_enabled
from campaigns.sending import queue_campaign, queue_triggered
from campaigns.sending.render import Builder, Outgoing
from campaigns.sending.worker import run_batch
from campaigns.tracking import buffer, tokens
from campaigns.tracking.links import LinkIds, Tracking, is_safe_url, rewrite_html, tracking_base_url
from deliverability.models import DnsRecord, Domain, SandboxMessage
from tests.campaigns.fixtures_sending import Setup, make_campaign, setup_fixture  # noqa: F401 - fixture "setup"
from tests.campaigns.fixtures_tracking import _fresh_tracking_caches  # noqa: F401 - autouse

pytestmark = pytest.mark.django_db

DOCUMENT = """<html><body>
<a href="https://shop.example/a?x=1&amp;y=2">A</a>
<a href='https://shop.example/b'>B</a>
<a href=https://shop.example/c>C</a>
<a href="mailto:ann@example.org">mail</a>
<a href="tel:+49301234">call</a>
<a href="#top">top</a>
<a href="/relative">relative</a>
<a href="javascript:alert(1)">script</a>
<a href="https://portal.example/u/abc123">unsubscribe</a>
<a href="https://shop.example/private" data-xes-notrack>private</a>
<a class="again" title="A" href="https://shop.example/a?x=1&amp;y=2">A again</a>
<A HREF="HTTPS://SHOP.EXAMPLE/UPPER">upper</A>
</body></html>"""
_TRACKED = re.compile(r"""href=["']?https://track\.example/t/c/([A-Za-z0-9_-]+)""", re.I)


def tracking(setup: Setup, message_id: int = 77) -> Tracking:
    return Tracking(
        base="https://track.example",
        message_id=message_id,
        organisation_id=setup.organisation.pk,
        link_ids=LinkIds(),
        skip_prefixes=("https://portal.example/u/",),
    )


def test_only_absolute_web_links_are_tracked(setup: Setup) -> None:
    html = rewrite_html(DOCUMENT, tracking(setup))

    assert "href='https://track.example/t/c/" in html
    assert "href=https://track.example/t/c/" in html

    found = [tokens.read(token) for token in _TRACKED.findall(html)]
    assert all(t is not None and t.kind == tokens.CLICK for t in found)
    urls = [TrackedLink.objects.get(pk=t.link_id).url for t in found if t is not None]
    assert urls == [
        "https://shop.example/a?x=1&y=2",
        "https://shop.example/b",
        "https://shop.example/c",
        "https://shop.example/a?x=1&y=2",
        "HTTPS://SHOP.EXAMPLE/UPPER",
    ]
    assert {(t.message_id, t.organisation_id) for t in found if t is not None} == {(77, setup.organisation.pk)}
    for kept in (
        'href="mailto:ann@example.org"',
        'href="tel:+49301234"',
        'href="#top"',
        'href="/relative"',
        'href="javascript:alert(1)"',
        'href="https://portal.example/u/abc123"',
        'href="https://shop.example/private"',
    ):
        assert kept in html
    assert TrackedLink.objects.count() == 4


def test_the_open_pixel_goes_before_the_end_of_the_body(setup: Setup) -> None:
    html = rewrite_html(DOCUMENT, tracking(setup))

    pixel = re.search(r'<img src="https://track\.example/t/o/([A-Za-z0-9_-]+)" width="1" height="1" alt=""', html)
    assert pixel is not None
    assert tokens.read(pixel.group(1)) == tokens.Token(tokens.OPEN, 77)
    assert html.index(pixel.group()) < html.index("</body>")
    assert rewrite_html("<p>no body</p>", tracking(setup)).startswith("<p>no body</p><img ")


def test_links_are_stored_once_per_organisation_and_then_cached(setup: Setup, django_assert_num_queries: Any) -> None:
    ids = LinkIds()
    first = ids(setup.organisation.pk, ["https://shop.example/x", "https://shop.example/y"])
    again = LinkIds()(setup.organisation.pk, ["https://shop.example/x"])  # another process

    with django_assert_num_queries(0):
        cached = ids(setup.organisation.pk, ["https://shop.example/y", "https://shop.example/x"])

    assert again["https://shop.example/x"] == first["https://shop.example/x"] == cached["https://shop.example/x"]
    assert TrackedLink.objects.filter(organisation=setup.organisation).count() == 2


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://shop.example/a", True),
        ("http://shop.example:8080/a?b=c#d", True),
        ("https://bücher.example/ä", True),
        ("//evil.example", False),
        ("https:\\\\evil.example", False),
        ("https://a.example\\@evil.example", False),
        ("https://user:pw@evil.example", False),
        ("javascript:alert(1)", False),
        ("data:text/html,x", False),
        ("https://a.example:99999/", False),
        ("https://", False),
        ("https://a.example/" + "x" * 9000, False),
    ],
)
def test_what_counts_as_a_safe_destination(url: str, safe: bool) -> None:
    assert is_safe_url(url) is safe


# --- on or off ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("campaign", "template", "promotional", "tracked"),
    [
        (None, None, True, True),
        (None, None, False, False),
        (None, True, False, True),
        (None, False, True, False),
        (False, True, True, False),
        (True, False, False, True),
    ],
)
def test_tracking_follows_campaign_then_template_then_kind(
    campaign: bool | None, template: bool | None, promotional: bool, tracked: bool
) -> None:
    assert tracking_enabled(campaign, template, promotional) is tracked


def outgoing(setup: Setup, message_id: int, campaign_id: int | None, promotional: bool) -> Outgoing:
    setup.template.body = '<html><body><a href="https://shop.example/spring">Shop</a></body></html>'
    return Outgoing(
        message_id=message_id,
        token="tok",
        to="ann@example.org",
        template=setup.template,
        sender=setup.sender,
        promotional=promotional,
        contact={"email": "ann@example.org"},
        data={},
        extra={"campaign_id": campaign_id},
    )


def html_part(raw: bytes) -> str:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    body = parsed.get_body(preferencelist=("html",))
    assert body is not None
    return str(body.get_content())


def test_the_builder_tracks_promotional_mail_and_respects_the_campaign(setup: Setup) -> None:
    campaign = make_campaign(setup, 0)
    setup.template.body = '<html><body><a href="https://shop.example/spring">Shop</a></body></html>'
    setup.template.save()

    tracked = html_part(Builder().build(outgoing(setup, 5, campaign.pk, True)))
    campaign.tracking = False
    campaign.save()
    untracked = html_part(Builder().build(outgoing(setup, 6, campaign.pk, True)))
    transactional = html_part(Builder().build(outgoing(setup, 7, None, False)))

    assert f"{settings.SITE_URL}/t/c/" in tracked
    assert f"{settings.SITE_URL}/t/o/" in tracked
    assert "https://shop.example/spring" not in tracked
    for html in (untracked, transactional):
        assert "/t/c/" not in html
        assert "/t/o/" not in html
        assert 'href="https://shop.example/spring"' in html


def test_the_unsubscribe_link_is_never_tracked(setup: Setup) -> None:
    setup.template.body = '<html><body><a href="{{ message.unsubscribe_url }}">Unsubscribe</a></body></html>'
    setup.template.save()
    promotional = Outgoing(
        message_id=9,
        token="tok",
        to="ann@example.org",
        template=setup.template,
        sender=setup.sender,
        promotional=True,
        contact={"email": "ann@example.org"},
        data={},
    )

    html = html_part(Builder().build(promotional))

    assert f'href="{settings.SITE_URL}/u/tok"' in html
    assert "/t/c/" not in html
    assert "/t/o/" in html


# --- the tracking host ----------------------------------------------------------------------------


def test_a_verified_branded_tracking_host_is_used(setup: Setup) -> None:
    domain = Domain.objects.create(
        sending_account=setup.account,
        name="sendco.example",
        verification_token="tok-sendco",
        tracking_subdomain="links",
        verified_at=timezone.now(),
    )
    record = DnsRecord.objects.create(
        domain=domain, kind=DnsRecord.Kind.TRACKING, name="links.sendco.example", rtype="CNAME", value="x"
    )
    assert tracking_base_url(setup.account.pk, setup.sender.email) == settings.SITE_URL  # not checked yet

    from campaigns.tracking.links import clear_caches

    record.status = DnsRecord.Status.OK
    record.save()
    clear_caches()
    scheme = settings.SITE_URL.split(":", 1)[0]
    assert tracking_base_url(setup.account.pk, setup.sender.email) == f"{scheme}://links.sendco.example"
    # another account's verified domain of the same name is not ours
    assert tracking_base_url(setup.account.pk + 10_000, setup.sender.email) == settings.SITE_URL


# --- end to end -----------------------------------------------------------------------------------


def test_a_sent_campaign_message_has_working_tracked_links(setup: Setup) -> None:
    setup.template.body = (
        '<html><body><p>Hi {{ contact.first_name }}</p><a href="https://shop.example/spring?c=1">Shop</a>'
        '<a href="{{ message.unsubscribe_url }}">Unsubscribe</a></body></html>'
    )
    setup.template.save()
    campaign = make_campaign(setup, 2)
    queue_campaign(campaign.pk)
    while run_batch(setup.account.pk):
        pass

    message = Message.objects.filter(campaign=campaign).order_by("pk").first()
    assert message is not None
    stored = SandboxMessage.objects.get(message_id=message.provider_message_id)
    html = html_part(bytes(stored.raw))
    click = re.search(r'href="[^"]*(/t/c/[A-Za-z0-9_-]+)"', html)
    pixel = re.search(r'src="[^"]*(/t/o/[A-Za-z0-9_-]+)"', html)
    assert click is not None
    assert pixel is not None
    assert f'href="{settings.SITE_URL}/u/{message.token}"' in html

    web = HttpClient(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux) Thunderbird/115")
    Message.objects.filter(pk=message.pk).update(sent_at=timezone.now() - timezone.timedelta(minutes=5))
    response = web.get(click.group(1))
    assert (response.status_code, response["Location"]) == (302, "https://shop.example/spring?c=1")
    assert web.get(pixel.group(1)).status_code == 200
    buffer.flush()

    events = {e.type: e for e in MessageEvent.objects.filter(message=message, type__in=["open", "click"])}
    assert set(events) == {"open", "click"}
    assert TrackedLink.objects.get(pk=events["click"].link_id).url == "https://shop.example/spring?c=1"
    assert not any(e.machine for e in events.values())


def test_transactional_triggered_mail_is_not_tracked_by_default(setup: Setup) -> None:
    setup.template.body = '<html><body><a href="https://shop.example/order">Order</a></body></html>'
    setup.template.save()
    message, _created = queue_triggered(setup.account, setup.template, "ann@example.org", {})
    while run_batch(setup.account.pk):
        pass

    message.refresh_from_db()
    html = html_part(bytes(SandboxMessage.objects.get(message_id=message.provider_message_id).raw))
    assert 'href="https://shop.example/order"' in html
    assert "/t/o/" not in html
