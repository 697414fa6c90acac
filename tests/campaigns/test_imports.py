"""The contact import: file formats and encodings, mapping, dry run, the RQ job, merges, errors, memory."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.core.files import File
from rq import SimpleWorker

from accounts.models import Membership
from campaigns import imports
from campaigns.contacts import create_custom_field
from campaigns.models import Contact, ContactList, CustomField, ImportJob
from tests.campaigns.fixtures_contacts import upload, xlsx_bytes
from tests.conftest import Tenant

FILES = Path(__file__).parent / "files"


def _membership(tenant: Tenant, user: Any = None) -> Membership:
    return Membership.objects.get(user=user or tenant.owner, organisation=tenant.organisation)


def _start(tenant: Tenant, name: str, content: bytes | None = None, **kwargs: Any) -> ImportJob:
    data = content if content is not None else (FILES / name).read_bytes()
    membership = kwargs.pop("membership", None) or _membership(tenant)
    return imports.start_import(membership, upload(name, data), **kwargs)


def _run(job: ImportJob, django_capture_on_commit_callbacks: Any) -> ImportJob:
    """Preview, queue (enqueued on commit) and run the job with a real RQ worker against Redis."""
    imports.preview_import(job)
    with django_capture_on_commit_callbacks(execute=True):
        assert imports.queue_import(job)
    queue = django_rq.get_queue(imports.QUEUE)
    assert queue.count == 1
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    job.refresh_from_db()
    return job


def _map(job: ImportJob, tenant: Tenant, columns: list[dict[str, Any]]) -> None:
    imports.set_mapping(job, _membership(tenant), columns)


def _errors_rows(job: ImportJob) -> list[list[str]]:
    with job.errors_file.open("rb") as handle:
        return list(csv.reader(io.StringIO(handle.read().decode("utf-8"))))


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    """Uploaded and error files go to a temporary folder, not the project's media/."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def city(tenant: Tenant) -> CustomField:
    return create_custom_field(tenant.organisation, key="city", label="City", type="text")


# --- encodings and delimiters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [
        ("utf8.csv", "utf-8", ","),
        ("utf8_bom.csv", "utf-8", ","),
        ("utf16le_bom.csv", "utf-16-le", "\t"),
        ("utf16be_bom.csv", "utf-16-be", ","),
    ],
)
def test_it_reads_utf8_with_and_without_bom_and_utf16(
    tenant: Tenant, city: CustomField, django_capture_on_commit_callbacks: Any, name: str, encoding: str, delimiter: str
) -> None:
    job = _start(tenant, name)
    assert (job.mapping["encoding"], job.mapping["delimiter"]) == (encoding, delimiter)
    # The BOM is not part of the first header, so "email" is recognised and city maps to the field.
    assert job.mapping["headers"] == ["email", "first_name", "last_name", "city"]
    assert [c["target"] for c in job.mapping["columns"]] == ["email", "first_name", "last_name", "field"]
    assert job.total_rows == 2
    _map(job, tenant, job.mapping["columns"])
    job = _run(job, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.DONE
    anna = Contact.objects.get(email="anna@example.com")
    assert (anna.first_name, anna.last_name, anna.fields) == ("Anna", "Ärger", {"city": "Köln"})
    assert job.created_count == 2


def test_semicolon_file_with_quotes_german_headers_and_a_new_number_field(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    job = _start(tenant, "semicolon.csv")
    assert job.mapping["delimiter"] == ";"
    columns = job.mapping["columns"]
    assert [c["target"] for c in columns] == ["email", "first_name", "last_name", "ignore"]
    columns[3] = {"target": "new", "key": "points", "label": "Punkte", "type": "number"}
    _map(job, tenant, columns)
    assert CustomField.objects.get(organisation=tenant.organisation, key="points").type == "number"
    job = _run(job, django_capture_on_commit_callbacks)
    assert Contact.objects.get(email="anna@example.com").fields == {"points": 1234.5}
    bob = Contact.objects.get(email="bob@example.com")
    assert bob.first_name == "Bob; the builder"
    assert bob.fields == {"points": 7}


def test_xlsx_import_with_typed_cells_and_case_insensitive_duplicates(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    for key, kind in (("points", "number"), ("birthday", "date"), ("vip", "boolean")):
        create_custom_field(tenant.organisation, key=key, label=key.title(), type=kind)
    job = _start(tenant, "contacts.xlsx")
    assert job.mapping["format"] == "xlsx"
    assert [c.get("key", c["target"]) for c in job.mapping["columns"]] == [
        "email",
        "first_name",
        "points",
        "birthday",
        "vip",
    ]
    _map(job, tenant, job.mapping["columns"])
    job = _run(job, django_capture_on_commit_callbacks)
    contact = Contact.objects.get(organisation=tenant.organisation)
    # The second row (same address, other case) wins where it has values and keeps the rest.
    assert contact.email == "xl@example.com"
    assert contact.first_name == "Excel"
    assert contact.fields == {"points": 43, "birthday": "1990-05-17", "vip": True}
    assert (job.created_count, job.error_count) == (1, 1)
    assert job.mapping["result"]["duplicates"] == 1
    assert _errors_rows(job)[1][:2] == ["4", "nope"]


# --- refused files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "The file is empty."),
        ("header_only.csv", "header row but no contacts"),
        ("not_a_csv.pdf", "neither a CSV nor an XLSX"),
        ("latin1.csv", "Line 3 contains bytes that are not valid UTF-8 (byte 0xFC)"),
    ],
)
def test_unusable_files_are_refused_with_a_clear_message_and_nothing_kept(
    tenant: Tenant, name: str, message: str
) -> None:
    with pytest.raises(imports.ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _start(tenant, name)
    assert not ImportJob.objects.exists()


def test_binary_data_renamed_to_csv_is_refused(tenant: Tenant) -> None:
    with pytest.raises(imports.ImportFileError, match="not a text file"):
        _start(tenant, "data.csv", b"email\n\x00\x01\x02\x03binary")


def test_a_zip_named_csv_and_a_csv_named_xlsx_are_refused(tenant: Tenant) -> None:
    with pytest.raises(imports.ImportFileError, match="not a CSV file"):
        _start(tenant, "book.csv", xlsx_bytes([["email"], ["a@example.com"]]))
    with pytest.raises(imports.ImportFileError, match="not an Excel workbook"):
        _start(tenant, "book.xlsx", b"email\na@example.com\n")


def test_files_over_the_size_limit_are_refused(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_IMPORT_BYTES", 1024 * 1024)
    with pytest.raises(imports.ImportFileError, match=r"The file is 2\.0 MB; the limit is 1 MB"):
        _start(tenant, "big.csv", b"email\n" + b"a@example.com\n" * (2 * 1024 * 1024 // 14))


# --- mapping ------------------------------------------------------------------------------


def test_mapping_needs_an_email_column_and_one_column_per_target(tenant: Tenant) -> None:
    job = _start(tenant, "utf8.csv")
    with pytest.raises(imports.MappingError) as no_email:
        _map(job, tenant, [{"target": "ignore"}] * 4)
    assert "e-mail addresses" in str(no_email.value)
    with pytest.raises(imports.MappingError) as twice:
        _map(job, tenant, [{"target": "email"}, {"target": "email"}, {"target": "ignore"}, {"target": "ignore"}])
    assert twice.value.columns == {1: ["Column “email” already goes there."]}


def test_a_bad_new_field_creates_no_field_at_all(tenant: Tenant) -> None:
    job = _start(tenant, "utf8.csv")
    with pytest.raises(imports.MappingError) as exc:
        _map(
            job,
            tenant,
            [
                {"target": "email"},
                {"target": "new", "key": "nickname", "label": "Nick", "type": "text"},
                {"target": "new", "key": "Bad Key", "label": "Bad", "type": "text"},
                {"target": "new", "key": "tier", "label": "Tier", "type": "choice", "choices": ""},
            ],
        )
    assert set(exc.value.columns) == {2, 3}
    assert not CustomField.objects.exists()


def test_client_users_cannot_create_fields_while_mapping(tenant: Tenant) -> None:
    membership = _membership(tenant, tenant.client_user)
    job = _start(tenant, "utf8.csv", membership=membership)
    with pytest.raises(imports.MappingError) as exc:
        imports.set_mapping(
            job, membership, [{"target": "email"}, {"target": "new", "key": "nick", "label": "N", "type": "text"}]
        )
    assert exc.value.columns[1] == ["Only your organisation's staff can add fields."]


# --- dry run, merge, errors ---------------------------------------------------------------


def test_preview_counts_new_updated_unchanged_errors_and_writes_nothing(tenant: Tenant, city: CustomField) -> None:
    Contact.objects.create(organisation=tenant.organisation, email="anna@example.com", first_name="Old")
    Contact.objects.create(
        organisation=tenant.organisation,
        email="BOB@example.com",
        first_name="Bob",
        last_name="Builder",
        fields={"city": "Berlin"},
    )
    content = (FILES / "utf8.csv").read_text() + "carl@example.com,Carl,,\nbroken,,,\n"
    job = _start(tenant, "mixed.csv", content.encode())
    _map(job, tenant, job.mapping["columns"])
    preview = imports.preview_import(job)
    assert {k: preview[k] for k in ("new", "updated", "unchanged", "errors", "rows", "partial")} == {
        "new": 1,
        "updated": 1,
        "unchanged": 1,
        "errors": 1,
        "rows": 4,
        "partial": False,
    }
    assert preview["first_errors"] == [(5, "“broken” is not a valid e-mail address")]
    assert Contact.objects.count() == 2
    assert Contact.objects.get(email="anna@example.com").first_name == "Old"


def test_merge_with_existing_contacts_updates_what_the_file_sets_and_keeps_the_rest(
    tenant: Tenant, city: CustomField, django_capture_on_commit_callbacks: Any
) -> None:
    create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    existing = Contact.objects.create(
        organisation=tenant.organisation,
        email="Anna@Example.com",
        first_name="Anna",
        last_name="Kept",
        fields={"points": 5, "city": "Bonn"},
    )
    job = _start(tenant, "update.csv", b"EMAIL,city,last_name\nanna@EXAMPLE.com,Koeln,\n")
    _map(job, tenant, job.mapping["columns"][:1] + [{"target": "field", "key": "city"}, {"target": "last_name"}])
    job = _run(job, django_capture_on_commit_callbacks)
    existing.refresh_from_db()
    assert existing.email == "Anna@Example.com"  # the stored spelling stays
    assert (existing.first_name, existing.last_name) == ("Anna", "Kept")
    assert existing.fields == {"points": 5, "city": "Koeln"}
    assert (job.created_count, job.updated_count) == (0, 1)
    assert Contact.objects.count() == 1


def test_duplicates_in_the_file_are_merged_case_insensitively(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    job = _start(tenant, "duplicates.csv")
    _map(job, tenant, job.mapping["columns"])
    preview = imports.preview_import(job)
    assert (preview["new"], preview["duplicates"]) == (2, 2)
    job = _run(job, django_capture_on_commit_callbacks)
    anna = Contact.objects.get(email__iexact="anna@example.com")
    assert (anna.email, anna.first_name, anna.last_name) == ("Anna@example.com", "Annie", "Smith")
    assert Contact.objects.count() == 2
    assert job.created_count == 2


def test_duplicates_across_batches_are_merged_not_counted_twice(
    tenant: Tenant, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    content = "email,first_name\na@example.com,A\nb@example.com,B\nA@example.com,Second\nc@example.com,C\n"
    job = _start(tenant, "batches.csv", content.encode())
    _map(job, tenant, job.mapping["columns"])
    assert imports.preview_import(job)["new"] == 3
    job = _run(job, django_capture_on_commit_callbacks)
    assert (job.created_count, job.updated_count, job.mapping["result"]["duplicates"]) == (3, 0, 1)
    assert Contact.objects.get(email="a@example.com").first_name == "Second"


def test_invalid_addresses_are_row_errors_named_by_row_and_downloadable_escaped(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    job = _start(tenant, "invalid_emails.csv")
    _map(job, tenant, job.mapping["columns"])
    job = _run(job, django_capture_on_commit_callbacks)
    assert sorted(Contact.objects.values_list("email", flat=True)) == ["also.good@example.com", "good@example.com"]
    assert job.error_count == 3
    rows = _errors_rows(job)
    assert rows[0] == ["Row", "E-mail", "Error"]
    assert rows[1] == ["3", "not-an-address", "“not-an-address” is not a valid e-mail address"]
    assert rows[2] == ["4", "", "no e-mail address"]
    # A formula typed as an address is neutralised in the downloadable file.
    assert rows[3][0] == "5"
    assert rows[3][1].startswith("'=cmd")


def test_bad_number_date_boolean_and_choice_values_are_row_errors(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    create_custom_field(tenant.organisation, key="birthday", label="Birthday", type="date")
    create_custom_field(tenant.organisation, key="vip", label="VIP", type="boolean")
    create_custom_field(tenant.organisation, key="plan", label="Plan", type="choice", choices="Gold, Silver")
    job = _start(tenant, "bad_values.csv")
    _map(job, tenant, job.mapping["columns"])
    job = _run(job, django_capture_on_commit_callbacks)
    assert list(Contact.objects.values_list("email", flat=True)) == ["a@example.com"]
    assert Contact.objects.get().fields == {"points": 12, "birthday": "2020-01-31", "vip": True, "plan": "Gold"}
    errors = {int(r[0]): r[2] for r in _errors_rows(job)[1:]}
    assert errors == {
        3: "points: “twelve” is not a number",
        4: "birthday: “31.02.2020” is not a date. Use the form 2025-03-31 (or 31.03.2025)",
        5: "vip: “maybe” is not yes or no (use yes/no, true/false or 1/0)",
        6: "plan: “Platinum” is not one of the choices: Gold, Silver",
    }


# --- the job ------------------------------------------------------------------------------


def test_contacts_join_the_chosen_list_and_its_client(tenant: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    members = ContactList.objects.create(organisation=tenant.organisation, client=tenant.client_a, name="Members")
    job = _start(tenant, "utf8.csv", contact_list=members)
    assert job.client == tenant.client_a
    _map(job, tenant, job.mapping["columns"])
    _run(job, django_capture_on_commit_callbacks)
    assert set(members.contacts.values_list("email", flat=True)) == {"anna@example.com", "bob@example.com"}
    assert set(Contact.objects.values_list("client", flat=True)) == {tenant.client_a.pk}


def test_a_client_user_imports_into_their_client_only(tenant: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    membership = _membership(tenant, tenant.client_user)
    job = _start(tenant, "utf8.csv", membership=membership, client=tenant.client_b)
    assert job.client == tenant.client_a
    imports.set_mapping(job, membership, job.mapping["columns"][:3])
    _run(job, django_capture_on_commit_callbacks)
    assert set(Contact.objects.values_list("client", flat=True)) == {tenant.client_a.pk}


def test_queueing_twice_enqueues_once_and_a_finished_job_does_nothing_again(
    tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    job = _start(tenant, "utf8.csv")
    _map(job, tenant, job.mapping["columns"][:3])
    job = _run(job, django_capture_on_commit_callbacks)
    assert not imports.queue_import(job)
    imports.run_import_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.created_count) == (ImportJob.Status.DONE, 2)


def test_progress_is_committed_per_batch(
    tenant: Tenant, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "BATCH_SIZE", 10)
    seen: list[tuple[int, int]] = []
    original = imports._Importer._flush

    def spy(self: Any, batch: Any, consumed: int, on_batch: Any, *, final: bool = False) -> None:
        original(self, batch, consumed, on_batch, final=final)
        if not self.dry_run:
            row = ImportJob.objects.get(pk=self.job.pk)
            seen.append((row.processed_rows, row.created_count))

    monkeypatch.setattr(imports._Importer, "_flush", spy)
    content = "email\n" + "".join(f"p{i}@example.com\n" for i in range(35))
    job = _start(tenant, "progress.csv", content.encode())
    _map(job, tenant, job.mapping["columns"])
    _run(job, django_capture_on_commit_callbacks)
    assert seen == [(10, 10), (20, 20), (30, 30), (35, 35)]


def test_an_interrupted_import_resumes_after_the_last_committed_batch(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    content = "email\na@example.com\nbad\nc@example.com\nd@example.com\ne@example.com\n"
    job = _start(tenant, "resume.csv", content.encode())
    _map(job, tenant, job.mapping["columns"])
    imports.preview_import(job)
    imports.queue_import(job)
    calls = {"n": 0}
    original = imports._Importer.apply

    def dying_apply(self: Any, batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        original(self, batch)

    monkeypatch.setattr(imports._Importer, "apply", dying_apply)
    with pytest.raises(RuntimeError):
        imports.run_import_job(job.pk)
    # The first batch (rows 2-3) was committed with its progress; mark it as a dead worker would leave it.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, message="")
    monkeypatch.setattr(imports._Importer, "apply", original)
    imports.run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert (job.created_count, job.error_count, job.processed_rows) == (4, 1, 5)
    assert sorted(Contact.objects.values_list("email", flat=True)) == [
        "a@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
    ]
    assert [r[0] for r in _errors_rows(job)[1:]] == ["3"]


def test_a_large_file_imports_in_bounded_memory(
    tenant: Tenant, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    """200,000 rows (about 7 MB): the import's peak Python allocation stays far below the file's size
    as Python objects, which holding the file (or all its rows) in memory would exceed."""
    rows = 200_000
    path = tmp_path / "large.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("email;first_name;points\n")
        for i in range(rows):
            out.write(f"person{i}@example.com;Name {i};{i}\n")
    create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    with path.open("rb") as handle:
        job = imports.start_import(_membership(tenant), File(handle, name="large.csv"))
    assert job.total_rows == rows
    _map(job, tenant, job.mapping["columns"][:2] + [{"target": "field", "key": "points"}])
    imports.preview_import(job)
    with django_capture_on_commit_callbacks(execute=True):
        imports.queue_import(job)
    tracemalloc.start()
    try:
        imports.run_import_job(job.pk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    job.refresh_from_db()
    assert (job.status, job.created_count) == (ImportJob.Status.DONE, rows)
    assert Contact.objects.filter(organisation=tenant.organisation).count() == rows
    # The rows as parsed Python lists alone would take well over 60 MB; the file itself is 7 MB.
    file_size = path.stat().st_size
    assert peak < 20 * 1024 * 1024, f"{rows} rows ({file_size / 1e6:.1f} MB): peak {peak / 1e6:.1f} MB"


# --- the fast paths give the same answers as the general ones -----------------------------

TRICKY_ADDRESSES = [
    "anna@example.com",
    "  Anna.Smith+tag@Example.COM ",
    "o'brien@sub.example.co.uk",
    "x@a.bc",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example.com.",
    "a@-example.com",
    "a@example-.com",
    "a@ex--ample.com",
    "a@xn--strae-oqa.example",
    "a@straße.example",
    "a@BÜCHER.example",
    "a@example.c",
    "a@example.123",
    "a@example.co-m",
    "a@localhost",
    "a@[127.0.0.1]",
    '"quoted local"@example.com',
    "a b@example.com",
    "a@exa mple.com",
    "a\r\n@example.com",
    "a@example.com\u2028",
    "no-at-sign",
    "@example.com",
    "a@",
    "a@" + "l" * 64 + ".example",
    "a@" + ".".join(["abcdefghij"] * 23) + ".com",
    "l" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 55 + ".com",
    "{weird}!#$%&*=?^`|~@example.org",
]


def _outcome(function: Any, raw: Any) -> tuple[Any, ...]:
    """What ``function(raw)`` gives: its value and type, or the messages of its ``ValidationError``."""
    from django.core.exceptions import ValidationError

    try:
        value = function(raw)
    except ValidationError as exc:
        return ("refused", exc.messages)
    return ("value", value, type(value))


@pytest.mark.parametrize("raw", TRICKY_ADDRESSES)
def test_the_fast_email_normaliser_agrees_with_normalise_email(raw: str) -> None:
    from accounts.services import normalise_email
    from campaigns.contacts import normalise_email_fast

    assert _outcome(normalise_email_fast, raw) == _outcome(normalise_email, raw)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("number", "12"),
        ("number", "+12"),
        ("number", "-0"),
        ("number", "007"),
        ("number", "999999999999999"),
        ("number", "1000000000000000"),
        ("number", "1.234,5"),
        ("number", "twelve"),
        ("number", 12),
        ("number", 10**15),
        ("number", True),
        ("number", 1.5),
        ("number", ""),
        ("number", None),
        ("text", "  Köln "),
        ("text", ""),
        ("text", "x" * 2001),
        ("text", 42),
        ("boolean", "ja"),
        ("boolean", "maybe"),
        ("date", "31.12.2024"),
    ],
)
def test_the_fast_value_coercer_agrees_with_coerce_value(tenant: Tenant, kind: str, raw: Any) -> None:
    from campaigns.contacts import coerce_value, value_coercer

    field = create_custom_field(tenant.organisation, key="f", label="F", type=kind)

    assert _outcome(value_coercer(field), raw) == _outcome(lambda value: coerce_value(field, value), raw)


# --- merging under a client and lists of existing contacts --------------------------------


def test_a_client_import_merges_with_that_clients_contacts_only_and_lists_existing_ones(
    tenant: Tenant, city: CustomField, django_capture_on_commit_callbacks: Any
) -> None:
    own = Contact.objects.create(organisation=tenant.organisation, email="anna@example.com", first_name="Org")
    theirs = Contact.objects.create(
        organisation=tenant.organisation, client=tenant.client_a, email="ANNA@example.com", first_name="Client"
    )
    already = Contact.objects.create(organisation=tenant.organisation, client=tenant.client_a, email="bob@example.com")
    members = ContactList.objects.create(organisation=tenant.organisation, client=tenant.client_a, name="Members")
    members.contacts.add(already)
    content = b"email,first_name,city\nanna@example.com,,Bonn\nbob@example.com,,\ncarl@example.com,Carl,Ulm\n"
    job = _start(tenant, "client.csv", content, contact_list=members)
    _map(job, tenant, job.mapping["columns"])
    assert imports.preview_import(job)["new"] == 1
    job = _run(job, django_capture_on_commit_callbacks)
    assert (job.created_count, job.updated_count, job.mapping["result"]["unchanged"]) == (1, 1, 1)
    own.refresh_from_db()
    theirs.refresh_from_db()
    assert (own.first_name, own.fields) == ("Org", {})
    assert (theirs.email, theirs.first_name, theirs.fields) == ("ANNA@example.com", "Client", {"city": "Bonn"})
    carl = Contact.objects.get(email="carl@example.com")
    assert (carl.client_id, carl.first_name, carl.fields) == (tenant.client_a.pk, "Carl", {"city": "Ulm"})
    # New, updated and unchanged contacts all end up on the list, once.
    assert sorted(members.memberships.values_list("contact__email", flat=True)) == [
        "ANNA@example.com",
        "bob@example.com",
        "carl@example.com",
    ]


def test_a_contact_deleted_between_insert_and_lookup_makes_the_batch_start_again(
    tenant: Tenant, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Contact.objects.create(organisation=tenant.organisation, email="a@example.com", first_name="Old")
    original = imports._Importer.existing
    calls = {"n": 0}

    def vanishing(self: Any, keys: list[str]) -> Any:
        calls["n"] += 1
        found = original(self, keys)
        return {} if calls["n"] == 2 else found  # the real run's first look-up misses it

    monkeypatch.setattr(imports._Importer, "existing", vanishing)
    job = _start(tenant, "retry.csv", b"email,first_name\na@example.com,New\nb@example.com,B\n")
    _map(job, tenant, job.mapping["columns"])
    job = _run(job, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.DONE
    assert (job.created_count, job.updated_count) == (1, 1)
    assert Contact.objects.get(email="a@example.com").first_name == "New"
    assert Contact.objects.count() == 2
