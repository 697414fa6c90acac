"""CSV import and export of an account's suppression list: the service (dry run, per-row errors,
normalisation, nothing lost) and the portal pages (tenancy, roles, formula-safe export)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import SendingAccount
from accounts.services import ServiceError
from deliverability import suppressions
from deliverability.models import Suppression
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db
Reason = Suppression.Reason


def _listed(account: SendingAccount) -> dict[str, tuple[str, str]]:
    return {s.email: (s.reason, s.note) for s in Suppression.objects.filter(sending_account=account)}


def _csv(text: str) -> bytes:
    return text.encode()


# --- the import service ------------------------------------------------------------------------------


FILE = _csv(
    "Email,Name,Note\n"
    "ann@example.net,Ann,asked by phone\n"
    "  Bob@BÜCHER.example ,Bob,\n"
    "not-an-address,X,\n"
    ",Empty,\n"
    "ANN@example.net,Ann again,\n"
    "\n"
    "carl@example.net,Carl,\n"
)


def test_a_dry_run_counts_and_writes_nothing(tenant: Tenant) -> None:
    result = suppressions.import_csv(tenant.account_a, FILE, dry_run=True)
    assert (result.rows, result.new, result.already, result.duplicates, result.error_count) == (6, 3, 0, 1, 2)
    assert [(row, value) for row, value, _message in result.errors] == [(4, "not-an-address"), (5, "")]
    assert not Suppression.objects.exists()


def test_the_import_adds_the_good_rows_as_manual_entries(tenant: Tenant) -> None:
    result = suppressions.import_csv(tenant.account_a, FILE, dry_run=False, by=tenant.admin, note="old tool")
    assert (result.new, result.error_count) == (3, 2)
    assert _listed(tenant.account_a) == {
        "ann@example.net": (Reason.MANUAL, "asked by phone"),
        "Bob@xn--bcher-kva.example": (Reason.MANUAL, "old tool"),
        "carl@example.net": (Reason.MANUAL, "old tool"),
    }
    assert set(Suppression.objects.values_list("created_by", flat=True)) == {tenant.admin.pk}
    assert _listed(tenant.account_b) == {}


def test_listed_addresses_keep_their_entry_whatever_the_case(tenant: Tenant) -> None:
    complaint = suppressions.suppress(tenant.account_a, "Ann@example.net", Reason.COMPLAINT, note="spam report")
    result = suppressions.import_csv(tenant.account_a, FILE, dry_run=False)
    assert (result.new, result.already) == (2, 1)
    complaint.refresh_from_db()
    assert (complaint.reason, complaint.note) == (Reason.COMPLAINT, "spam report")
    assert Suppression.objects.filter(email__iexact="ann@example.net").count() == 1


def test_importing_twice_adds_nothing_the_second_time(tenant: Tenant) -> None:
    suppressions.import_csv(tenant.account_a, FILE, dry_run=False)
    again = suppressions.import_csv(tenant.account_a, FILE, dry_run=False)
    assert (again.new, again.already) == (0, 3)
    assert Suppression.objects.count() == 3


@pytest.mark.parametrize(
    "data",
    [
        _csv("ann@example.net\nbob@example.net\n"),  # no header: addresses in the first column
        _csv("E-Mail;Vorname\nann@example.net;Ann\nbob@example.net;Bob\n"),  # German Excel: semicolons
        _csv("name\temail address\nAnn\tann@example.net\nBob\tbob@example.net\n"),
        b"\xef\xbb\xbfemail\r\nann@example.net\r\nbob@example.net\r\n",  # UTF-8 with BOM, CRLF
        "email\nann@example.net\nbob@example.net\n".encode("utf-16"),
        _csv('"Email Address","Note"\n"ann@example.net","a, b"\n"bob@example.net",""\n'),
    ],
    ids=["no-header", "semicolon", "tab", "bom", "utf-16", "quoted"],
)
def test_common_file_shapes_are_read(tenant: Tenant, data: bytes) -> None:
    result = suppressions.import_csv(tenant.account_a, data, dry_run=False)
    assert (result.new, result.error_count) == (2, 0)
    assert set(_listed(tenant.account_a)) == {"ann@example.net", "bob@example.net"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (_csv("name,city\nAnn,Berlin\n"), "No column of e-mail addresses"),
        (b"email\nann@example.net\n\xff\xfebroken\n", "Line 3 is not valid UTF-8"),
        (b"email\x00\x00\n", "not a CSV file"),
    ],
)
def test_an_unreadable_file_is_refused_whole_and_adds_nothing(tenant: Tenant, data: bytes, message: str) -> None:
    with pytest.raises(ServiceError, match=message):
        suppressions.import_csv(tenant.account_a, data, dry_run=False)
    assert not Suppression.objects.exists()


def test_too_many_rows_are_refused(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suppressions, "IMPORT_MAX_ROWS", 3)
    with pytest.raises(ServiceError, match="more than 3 rows"):
        suppressions.import_csv(tenant.account_a, _csv("email\n" + "a@example.net\n" * 5), dry_run=True)


def test_a_file_too_large_is_refused(tenant: Tenant) -> None:
    with pytest.raises(ServiceError, match="larger than"):
        suppressions.read_csv(b"a" * (suppressions.IMPORT_MAX_BYTES + 1))


def test_batches_add_up(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suppressions, "IMPORT_BATCH", 3)
    suppressions.suppress(tenant.account_a, "user4@example.net", Reason.UNSUBSCRIBE)
    data = _csv("email\n" + "".join(f"user{n}@example.net\n" for n in range(10)))
    result = suppressions.import_csv(tenant.account_a, data, dry_run=False)
    assert (result.new, result.already) == (9, 1)
    assert Suppression.objects.filter(sending_account=tenant.account_a).count() == 10


def test_only_the_first_errors_are_kept_but_all_are_counted(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suppressions, "IMPORT_ERRORS_KEPT", 2)
    result = suppressions.import_csv(tenant.account_a, _csv("email\nx\ny\nz\nok@example.net\n"), dry_run=True)
    assert result.error_count == 3
    assert [row for row, _v, _m in result.errors] == [2, 3]
    assert result.new == 1


# --- the export service and the round trip -------------------------------------------------------


def _rows(data: bytes | str) -> list[list[str]]:
    text = data.decode() if isinstance(data, bytes) else data
    return list(csv.reader(io.StringIO(text)))


def test_the_export_is_formula_safe_and_reimports(tenant: Tenant) -> None:
    suppressions.suppress(tenant.account_a, "=cmd@example.net", Reason.COMPLAINT, note='=HYPERLINK("http://evil")')
    suppressions.suppress(tenant.account_a, "+1@example.net", Reason.MANUAL, note="@SUM(A1)")
    rows = list(suppressions.export_rows(Suppression.objects.filter(sending_account=tenant.account_a)))
    assert rows[0] == ["email", "reason", "note", "added_at", "added_by"]
    assert [row[:3] for row in rows[1:]] == [
        ["'=cmd@example.net", "complaint", '\'=HYPERLINK("http://evil")'],
        ["'+1@example.net", "manual", "'@SUM(A1)"],
    ]
    # The file goes into another account as it came out of this one.
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    result = suppressions.import_csv(tenant.account_b, out.getvalue().encode(), dry_run=False)
    assert (result.new, result.error_count) == (2, 0)
    assert set(_listed(tenant.account_b)) == {"=cmd@example.net", "+1@example.net"}


# --- the portal pages --------------------------------------------------------------------------------


def _import_url(account: SendingAccount) -> str:
    return reverse("deliverability:suppression_import", args=[account.pk])


def _export_url(account: SendingAccount) -> str:
    return reverse("deliverability:suppression_export", args=[account.pk])


def _upload(data: bytes = FILE) -> SimpleUploadedFile:
    return SimpleUploadedFile("list.csv", data, content_type="text/csv")


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_check_then_import_a_file(tenant: Tenant, login: Any, role: str) -> None:
    client = login(getattr(tenant, role))
    assert client.get(_import_url(tenant.account_a)).status_code == 200
    checked = client.post(_import_url(tenant.account_a), {"file": _upload(), "action": "check"})
    assert checked.status_code == 200
    assert checked.context["result"].dry_run is True
    assert b'data-testid="count-new">3<' in checked.content
    assert b"not-an-address" in checked.content
    assert not Suppression.objects.exists()
    imported = client.post(_import_url(tenant.account_a), {"file": _upload(), "action": "import"})
    assert imported.context["result"].new == 3
    assert set(_listed(tenant.account_a)) == {"ann@example.net", "Bob@xn--bcher-kva.example", "carl@example.net"}


def test_an_unreadable_upload_says_why(tenant: Tenant, login: Any) -> None:
    client = login(tenant.owner)
    response = client.post(_import_url(tenant.account_a), {"file": _upload(b"name\nAnn\n"), "action": "import"})
    assert response.status_code == 400
    assert "No column of e-mail addresses" in response.content.decode()


@pytest.mark.parametrize("role", ["member", "client_user"])
def test_other_roles_may_not_import(tenant: Tenant, login: Any, role: str) -> None:
    client = login(getattr(tenant, role))
    assert client.get(_import_url(tenant.account_a)).status_code == 403
    assert client.post(_import_url(tenant.account_a), {"file": _upload(), "action": "import"}).status_code == 403
    assert not Suppression.objects.exists()


def test_an_outsider_gets_404_for_import_and_export(tenant: Tenant, outsider: Any, login: Any) -> None:
    suppressions.suppress(tenant.account_a, "secret@example.net", Reason.MANUAL)
    client = login(outsider)
    assert client.get(_import_url(tenant.account_a)).status_code == 404
    assert client.post(_import_url(tenant.account_a), {"file": _upload(), "action": "import"}).status_code == 404
    assert client.get(_export_url(tenant.account_a)).status_code == 404
    assert Suppression.objects.count() == 1


def test_a_client_user_exports_only_their_clients_accounts(tenant: Tenant, login: Any) -> None:
    suppressions.suppress(tenant.account_a, "a@example.net", Reason.MANUAL)
    suppressions.suppress(tenant.account_b, "b@example.net", Reason.MANUAL)
    client = login(tenant.client_user)
    assert client.get(_export_url(tenant.account_b)).status_code == 404
    response = client.get(_export_url(tenant.account_a))
    assert response.status_code == 200
    rows = _rows(b"".join(response.streaming_content))
    assert [row[0] for row in rows[1:]] == ["a@example.net"]


def test_the_export_downloads_the_list_filtered_like_the_page(tenant: Tenant, login: Any) -> None:
    suppressions.suppress(tenant.account_a, "a@alpha.example", Reason.HARD_BOUNCE)
    suppressions.suppress(tenant.account_a, "b@alpha.example", Reason.MANUAL)
    suppressions.suppress(tenant.account_a, "c@other.example", Reason.MANUAL)
    client = login(tenant.member)
    everything = client.get(_export_url(tenant.account_a))
    assert everything["Content-Type"] == "text/csv; charset=utf-8"
    assert everything["Content-Disposition"].startswith('attachment; filename="suppressions-alpha-account-')
    assert len(_rows(b"".join(everything.streaming_content))) == 4
    filtered = client.get(_export_url(tenant.account_a), {"q": "alpha", "reason": "manual"})
    assert [row[0] for row in _rows(b"".join(filtered.streaming_content))[1:]] == ["b@alpha.example"]


def test_the_list_page_links_import_for_managers_only(tenant: Tenant, login: Any) -> None:
    page = reverse("deliverability:suppression_list", args=[tenant.account_a.pk])
    owner_page = login(tenant.owner).get(page).content.decode()
    assert _import_url(tenant.account_a) in owner_page
    assert _export_url(tenant.account_a) in owner_page
    member_page = login(tenant.member).get(page).content.decode()
    assert _import_url(tenant.account_a) not in member_page
    assert _export_url(tenant.account_a) in member_page


def test_the_export_query_count_does_not_grow_with_the_list(
    tenant: Tenant, login: Any, django_assert_max_num_queries: Any
) -> None:
    for n in range(30):
        suppressions.suppress(tenant.account_a, f"user{n}@example.net", Reason.MANUAL, by=tenant.owner)
    client = login(tenant.owner)
    with django_assert_max_num_queries(8):
        response = client.get(_export_url(tenant.account_a))
        rows = _rows(b"".join(response.streaming_content))
    assert len(rows) == 31
    assert rows[1][4] == "owner@acme.example"
