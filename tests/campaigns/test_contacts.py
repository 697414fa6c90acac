"""Contact services: typed values, fields, contacts, lists and the formula-safe export."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from openpyxl import load_workbook

from accounts.models import Membership
from campaigns import contacts as services
from campaigns.models import Contact, ContactList, CustomField
from tests.conftest import Tenant


def _membership(tenant: Tenant, user: Any = None) -> Membership:
    return Membership.objects.get(user=user or tenant.owner, organisation=tenant.organisation)


def _field(kind: str, choices: list[str] | None = None) -> CustomField:
    return CustomField(key="f", label="F", type=kind, choices=choices or [])


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        ("number", "42", 42),
        ("number", "-3.5", -3.5),
        ("number", "1.234,5", 1234.5),
        ("number", "1,234.5", 1234.5),
        ("number", "2,5", 2.5),
        ("number", 7.0, 7),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "31.12.2024", "2024-12-31"),
        ("boolean", "Yes", True),
        ("boolean", "0", False),
        ("boolean", "nein", False),
        ("choice", "gold", "Gold"),
        ("text", "  hello ", "hello"),
        ("number", "", None),
    ],
)
def test_coerce_value_accepts(kind: str, raw: Any, value: Any) -> None:
    assert services.coerce_value(_field(kind, ["Gold", "Silver"]), raw) == value


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("number", "12abc", "is not a number"),
        ("number", "1e400", "is not a number"),
        ("date", "2023-02-29", "is not a date"),
        ("date", "03/31/2024", "is not a date"),
        ("boolean", "perhaps", "is not yes or no"),
        ("choice", "Bronze", "not one of the choices: Gold, Silver"),
    ],
)
def test_coerce_value_refuses_with_a_clear_message(kind: str, raw: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        services.coerce_value(_field(kind, ["Gold", "Silver"]), raw)


def test_custom_field_keys_are_checked(tenant: Tenant) -> None:
    services.create_custom_field(tenant.organisation, key="city", label="City", type="text")
    for key, message in (("city", "already exists"), ("email", "built-in"), ("Bad Key", "lower-case")):
        with pytest.raises(ValidationError, match=message):
            services.create_custom_field(tenant.organisation, key=key, label="X", type="text")
    with pytest.raises(ValidationError, match="at least one choice"):
        services.create_custom_field(tenant.organisation, key="tier", label="Tier", type="choice", choices=" , ")


def test_deleting_a_field_removes_its_values_from_every_contact(tenant: Tenant) -> None:
    field = services.create_custom_field(tenant.organisation, key="city", label="City", type="text")
    contact = Contact.objects.create(
        organisation=tenant.organisation, email="a@example.com", fields={"city": "Bonn", "other": 1}
    )
    assert services.delete_custom_field(field) == 1
    contact.refresh_from_db()
    assert contact.fields == {"other": 1}


def test_contacts_are_unique_per_client_ignoring_case(tenant: Tenant) -> None:
    owner = _membership(tenant)
    services.create_contact(owner, {"email": "Anna@Example.com"})
    with pytest.raises(ValidationError, match="already exists"):
        services.create_contact(owner, {"email": "anna@example.COM"})
    # Another client may have the same person.
    services.create_contact(owner, {"email": "anna@example.com"}, client=tenant.client_a)
    assert Contact.objects.count() == 2


def test_a_client_user_creates_contacts_of_their_own_client_whatever_they_ask(tenant: Tenant) -> None:
    contact = services.create_contact(
        _membership(tenant, tenant.client_user), {"email": "x@example.com"}, client=tenant.client_b
    )
    assert contact.client == tenant.client_a


def test_contact_values_are_validated_per_input(tenant: Tenant) -> None:
    services.create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    with pytest.raises(ValidationError) as exc:
        services.create_contact(_membership(tenant), {"email": "nope", "points": "many", "first_name": "x" * 101})
    assert set(exc.value.message_dict) == {"email", "points", "first_name"}


def test_update_clears_emptied_values_and_refuses_a_clashing_address(tenant: Tenant) -> None:
    owner = _membership(tenant)
    services.create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    contact = services.create_contact(owner, {"email": "a@example.com", "points": "3"})
    services.create_contact(owner, {"email": "b@example.com"})
    services.update_contact(contact, {"email": "a@example.com", "first_name": "A", "points": ""})
    contact.refresh_from_db()
    assert (contact.first_name, contact.fields) == ("A", {})
    with pytest.raises(ValidationError, match="already exists"):
        services.update_contact(contact, {"email": "B@example.com"})


def test_lists_only_hold_contacts_of_their_client(tenant: Tenant) -> None:
    owner = _membership(tenant)
    alpha_list = services.create_list(owner, "Alpha newsletter", client=tenant.client_a)
    ours = services.create_contact(owner, {"email": "a@example.com"}, client=tenant.client_a)
    theirs = services.create_contact(owner, {"email": "b@example.com"}, client=tenant.client_b)
    assert services.add_to_list(alpha_list, Contact.objects.all()) == 1
    assert services.add_to_list(alpha_list, Contact.objects.all()) == 0
    assert list(alpha_list.contacts.all()) == [ours]
    assert services.remove_from_list(alpha_list, Contact.objects.filter(pk=ours.pk)) == 1
    assert Contact.objects.filter(pk=theirs.pk).exists()
    assert ContactList.objects.get(pk=alpha_list.pk).contacts.count() == 0


def test_search_finds_address_and_names_in_any_case(tenant: Tenant) -> None:
    owner = _membership(tenant)
    services.create_contact(owner, {"email": "anna@example.com", "first_name": "Anna", "last_name": "Berg"})
    services.create_contact(owner, {"email": "bob@example.com", "first_name": "Bob"})
    qs = Contact.objects.all()
    assert [c.email for c in services.search_contacts(qs, "ANNA")] == ["anna@example.com"]
    assert [c.email for c in services.search_contacts(qs, "anna berg")] == ["anna@example.com"]
    assert services.search_contacts(qs, "example").count() == 2


DANGEROUS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR", " =lead", "＝fullwidth"]


@pytest.fixture
def dangerous_contacts(tenant: Tenant) -> None:
    services.create_custom_field(tenant.organisation, key="note", label="Note", type="text")
    services.create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    for i, text in enumerate(DANGEROUS):
        Contact.objects.create(
            organisation=tenant.organisation,
            email=f"c{i}@example.com",
            first_name=text,
            fields={"note": text, "points": -5},
        )


def test_csv_export_escapes_formulas(tenant: Tenant, dangerous_contacts: None) -> None:
    data = services.export_contacts(Contact.objects.all(), tenant.organisation, "csv").decode("utf-8")
    rows = list(csv.reader(io.StringIO(data)))
    assert rows[0] == ["E-mail", "First name", "Last name", "Client", "Created (UTC)", "Note", "Points"]
    for row, text in zip(rows[1:], DANGEROUS, strict=True):
        assert row[1] == "'" + text
        assert row[5] == row[1]
        assert row[6] == "-5"  # numbers stay numbers


def test_xlsx_export_escapes_formulas_and_keeps_numbers(tenant: Tenant, dangerous_contacts: None) -> None:
    data = services.export_contacts(Contact.objects.all(), tenant.organisation, "xlsx")
    sheet = load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][5:] == ("Note", "Points")
    firsts = [row[1] for row in values[1:]]
    assert all(isinstance(v, str) and v.startswith("'") for v in firsts), firsts
    assert all(row[6] == -5 for row in values[1:])
