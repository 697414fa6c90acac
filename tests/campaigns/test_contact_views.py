"""Contact pages and the import wizard over HTTP: tenancy (outsider 404, client-user scope, 403),
clear errors, the htmx progress panel and the error download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.urls import reverse
from rq import SimpleWorker

from accounts.models import Membership
from campaigns import imports
from campaigns.contacts import create_custom_field
from campaigns.models import Contact, ContactList, CustomField, ImportJob
from tests.campaigns.fixtures_contacts import upload
from tests.conftest import Tenant

FILES = Path(__file__).parent / "files"


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def alpha_contact(tenant: Tenant) -> Contact:
    return Contact.objects.create(organisation=tenant.organisation, client=tenant.client_a, email="a@alpha.example")


@pytest.fixture
def org_contact(tenant: Tenant) -> Contact:
    return Contact.objects.create(organisation=tenant.organisation, email="o@acme.example", first_name="Org")


def test_contact_list_searches_and_paginates(tenant: Tenant, login: Any, django_assert_max_num_queries: Any) -> None:
    Contact.objects.bulk_create(
        Contact(organisation=tenant.organisation, email=f"p{i:03}@example.com", first_name="Pat") for i in range(60)
    )
    client = login(tenant.owner)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("campaigns:contact_list"))
    assert response.status_code == 200
    assert "60 contacts" in response.text
    assert "p049@example.com" in response.text
    assert "p050@example.com" not in response.text
    response = client.get(reverse("campaigns:contact_list"), {"q": "P007"}, headers={"HX-Request": "true"})
    assert "p007@example.com" in response.text
    assert "1 contact" in response.text
    assert "<html" not in response.text  # the htmx answer is the results partial


def test_client_users_see_only_their_clients_contacts(
    tenant: Tenant, login: Any, alpha_contact: Contact, org_contact: Contact
) -> None:
    client = login(tenant.client_user)
    page = client.get(reverse("campaigns:contact_list")).text
    assert "a@alpha.example" in page
    assert "o@acme.example" not in page
    assert client.get(reverse("campaigns:contact_detail", args=[org_contact.pk])).status_code == 404
    assert client.post(reverse("campaigns:contact_delete", args=[org_contact.pk])).status_code == 404


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("contact_detail", "get"),
        ("contact_delete", "post"),
        ("contact_lists_change", "post"),
    ],
)
def test_outsiders_get_404_for_contacts(
    tenant: Tenant, outsider: Any, login: Any, org_contact: Contact, name: str, method: str
) -> None:
    response = getattr(login(outsider), method)(reverse(f"campaigns:{name}", args=[org_contact.pk]))
    assert response.status_code == 404
    assert Contact.objects.filter(pk=org_contact.pk).exists()


def test_creating_a_contact_with_bad_values_shows_the_errors_and_keeps_the_input(tenant: Tenant, login: Any) -> None:
    create_custom_field(tenant.organisation, key="points", label="Points", type="number")
    response = login(tenant.member).post(
        reverse("campaigns:contact_create"), {"email": "not-an-address", "first_name": "Kept", "points": "lots"}
    )
    assert response.status_code == 400
    assert "Enter a valid e-mail address" in response.text
    assert "“lots” is not a number." in response.text
    assert 'value="Kept"' in response.text
    assert not Contact.objects.exists()


def test_creating_and_editing_a_contact(tenant: Tenant, login: Any) -> None:
    create_custom_field(tenant.organisation, key="vip", label="VIP", type="boolean")
    client = login(tenant.member)
    response = client.post(
        reverse("campaigns:contact_create"),
        {"email": "new@example.com", "vip": "yes", "client": str(tenant.client_b.pk)},
    )
    contact = Contact.objects.get()
    assert response.url == reverse("campaigns:contact_detail", args=[contact.pk])
    assert (contact.client, contact.fields) == (tenant.client_b, {"vip": True})
    page = client.get(response.url).text
    assert '<option value="yes" selected>' in page
    client.post(response.url, {"email": "new@example.com", "last_name": "Neu", "vip": "no"})
    contact.refresh_from_db()
    assert (contact.last_name, contact.fields) == ("Neu", {"vip": False})


def test_choosing_another_organisations_client_is_404(tenant: Tenant, outsider: Any, login: Any) -> None:
    foreign = Membership.objects.get(user=outsider).organisation
    from tests.factories import ClientFactory

    other_client = ClientFactory(organisation=foreign)
    response = login(tenant.owner).post(
        reverse("campaigns:contact_create"), {"email": "x@example.com", "client": str(other_client.pk)}
    )
    assert response.status_code == 404
    assert not Contact.objects.exists()


def test_adding_and_removing_a_contact_from_a_list(tenant: Tenant, login: Any, alpha_contact: Contact) -> None:
    alpha_list = ContactList.objects.create(organisation=tenant.organisation, client=tenant.client_a, name="A")
    client = login(tenant.client_user)
    url = reverse("campaigns:contact_lists_change", args=[alpha_contact.pk])
    client.post(url, {"list": alpha_list.pk, "action": "add"})
    assert list(alpha_list.contacts.all()) == [alpha_contact]
    client.post(url, {"list": alpha_list.pk, "action": "remove"})
    assert not alpha_list.contacts.exists()
    org_list = ContactList.objects.create(organisation=tenant.organisation, name="Org list")
    assert client.post(url, {"list": org_list.pk, "action": "add"}).status_code == 404


def test_fields_page_lets_staff_add_and_delete_and_client_users_only_look(tenant: Tenant, login: Any) -> None:
    url = reverse("campaigns:field_list")
    response = login(tenant.member).post(url, {"label": "Tier", "key": "tier", "type": "choice", "choices": ""})
    assert response.status_code == 400
    assert "A choice field needs at least one choice." in response.text
    login(tenant.member).post(url, {"label": "Tier", "key": "tier", "type": "choice", "choices": "Gold\nSilver"})
    field = CustomField.objects.get(key="tier")
    assert field.choices == ["Gold", "Silver"]
    client_user = login(tenant.client_user)
    assert "Tier" in client_user.get(url).text
    assert client_user.post(url, {"label": "X", "key": "x", "type": "text"}).status_code == 403
    assert client_user.post(reverse("campaigns:field_delete", args=[field.pk])).status_code == 403
    owner = login(tenant.owner)
    owner.post(reverse("campaigns:field_delete", args=[field.pk]))
    assert not CustomField.objects.exists()


def test_outsiders_cannot_delete_fields_or_lists(tenant: Tenant, outsider: Any, login: Any) -> None:
    field = create_custom_field(tenant.organisation, key="city", label="City", type="text")
    contact_list = ContactList.objects.create(organisation=tenant.organisation, name="L")
    client = login(outsider)
    assert client.post(reverse("campaigns:field_delete", args=[field.pk])).status_code == 404
    assert client.post(reverse("campaigns:list_delete", args=[contact_list.pk])).status_code == 404
    assert CustomField.objects.exists()
    assert ContactList.objects.exists()


def test_lists_page_creates_lists_in_scope(tenant: Tenant, login: Any) -> None:
    url = reverse("campaigns:list_list")
    assert login(tenant.owner).post(url, {"name": " "}).status_code == 400
    login(tenant.client_user).post(url, {"name": "Alpha fans", "client": str(tenant.client_b.pk)})
    assert ContactList.objects.get().client == tenant.client_a
    assert "Alpha fans" in login(tenant.client_user).get(url).text


def test_export_is_scoped_and_downloads(
    tenant: Tenant, login: Any, alpha_contact: Contact, org_contact: Contact
) -> None:
    response = login(tenant.client_user).get(reverse("campaigns:contact_export"), {"format": "csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "a@alpha.example" in response.content.decode()
    assert "o@acme.example" not in response.content.decode()
    assert login(tenant.owner).get(reverse("campaigns:contact_export"), {"format": "pdf"}).status_code == 404
    xlsx = login(tenant.owner).get(reverse("campaigns:contact_export"), {"format": "xlsx"})
    assert xlsx.content[:2] == b"PK"


# --- the import wizard --------------------------------------------------------------------


def _upload(client: Any, name: str, **extra: Any) -> Any:
    return client.post(reverse("campaigns:import_start"), {"file": upload(name, (FILES / name).read_bytes()), **extra})


def test_the_wizard_from_upload_to_result(tenant: Tenant, login: Any, django_capture_on_commit_callbacks: Any) -> None:
    client = login(tenant.member)
    response = _upload(client, "invalid_emails.csv")
    job = ImportJob.objects.get()
    assert response.url == reverse("campaigns:import_detail", args=[job.pk])
    page = client.get(response.url).text
    assert 'name="col-0"' in page
    assert '<option value="email" selected>' in page
    response = client.post(response.url, {"col-0": "email", "col-1": "first_name"})
    assert response.status_code == 302
    page = client.get(response.url).text
    assert 'data-testid="preview-new">2<' in page
    assert 'data-testid="preview-errors">3<' in page
    assert "Row 3: “not-an-address” is not a valid e-mail address" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("campaigns:import_run", args=[job.pk]))
        client.post(reverse("campaigns:import_run", args=[job.pk]))  # a double click
    queue = django_rq.get_queue(imports.QUEUE)
    assert queue.count == 1
    progress = client.get(reverse("campaigns:import_progress", args=[job.pk]), headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in progress.text
    assert 'data-progress="0"' in progress.text
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    progress = client.get(reverse("campaigns:import_progress", args=[job.pk]), headers={"HX-Request": "true"})
    assert "hx-trigger" not in progress.text  # done: polling stops
    assert 'data-progress="100"' in progress.text
    assert 'data-testid="result-new">2<' in progress.text
    errors = client.get(reverse("campaigns:import_errors", args=[job.pk]))
    assert errors["Content-Disposition"] == f'attachment; filename="import-{job.pk}-errors.csv"'
    body = b"".join(errors.streaming_content).decode()
    assert body.splitlines()[1] == "3,not-an-address,“not-an-address” is not a valid e-mail address"


def test_a_bad_upload_answers_400_with_the_reason(tenant: Tenant, login: Any) -> None:
    response = _upload(login(tenant.owner), "latin1.csv")
    assert response.status_code == 400
    assert "Line 3 contains bytes that are not valid UTF-8" in response.text
    response = _upload(login(tenant.owner), "not_a_csv.pdf")
    assert "is neither a CSV nor an XLSX file" in response.text
    assert not ImportJob.objects.exists()


def test_mapping_errors_are_shown_per_column_and_a_new_field_can_be_created(tenant: Tenant, login: Any) -> None:
    client = login(tenant.owner)
    url = _upload(client, "utf8.csv").url
    response = client.post(url, {"col-0": "ignore"})
    assert response.status_code == 400
    assert "Choose the column that holds the e-mail addresses." in response.text
    response = client.post(
        url,
        {"col-0": "email", "col-3": "new", "col-3-key": "town", "col-3-label": "Town", "col-3-type": "text"},
    )
    assert response.status_code == 302
    assert CustomField.objects.get().key == "town"


def test_imports_are_tenant_scoped(tenant: Tenant, outsider: Any, login: Any) -> None:
    _upload(login(tenant.owner), "utf8.csv")
    job = ImportJob.objects.get()
    for name in ("import_detail", "import_progress", "import_errors"):
        assert login(outsider).get(reverse(f"campaigns:{name}", args=[job.pk])).status_code == 404
        # The organisation's own import (no client) is outside a client-user's scope.
        assert login(tenant.client_user).get(reverse(f"campaigns:{name}", args=[job.pk])).status_code == 404
    assert login(outsider).post(reverse("campaigns:import_run", args=[job.pk])).status_code == 404


def test_a_client_user_imports_into_a_list_of_another_client_is_404(tenant: Tenant, login: Any) -> None:
    beta_list = ContactList.objects.create(organisation=tenant.organisation, client=tenant.client_b, name="B")
    response = _upload(login(tenant.client_user), "utf8.csv", contact_list=str(beta_list.pk))
    assert response.status_code == 404
    assert not ImportJob.objects.exists()


def test_anonymous_users_are_sent_to_log_in(db: None) -> None:
    from django.test import Client

    response = Client().get(reverse("campaigns:contact_list"))
    assert response.status_code == 302
    assert "/accounts/login/" in response.url
