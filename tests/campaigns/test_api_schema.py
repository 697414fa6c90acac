"""The OpenAPI schema is valid and documents the API; the docs page works offline under our CSP."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.test import Client as HttpClient
from drf_spectacular.validation import validate_schema


def schema(client: HttpClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return dict(response.json())


def test_the_schema_is_served_without_a_key_and_is_valid_openapi(client: HttpClient, db: None) -> None:
    document = schema(client)

    validate_schema(document)  # raises on an invalid document
    assert document["info"]["title"] == "XES Portal API"


def test_the_schema_lists_the_endpoints_and_only_them(client: HttpClient, db: None) -> None:
    paths = schema(client)["paths"]

    assert set(paths) == {"/api/v1/account", "/api/v1/messages", "/api/v1/messages/{id}"}
    assert set(paths["/api/v1/messages"]) == {"post"}
    assert set(paths["/api/v1/messages/{id}"]) == {"get"}


def test_the_schema_documents_the_key_and_the_errors(client: HttpClient, db: None) -> None:
    document = schema(client)
    send = document["paths"]["/api/v1/messages"]["post"]

    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["apiKey"]["description"],
    }
    assert send["security"] == [{"apiKey": []}]
    assert {"200", "202", "400", "401", "402", "403", "415", "422"} <= set(send["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in send["parameters"])
    request = document["components"]["schemas"]["MessageCreateRequest"]
    assert set(request["properties"]) == {"template", "to", "data", "sender", "touchpoint", "campaign"}
    assert request["required"] == ["template", "to"]
    statuses = document["components"]["schemas"]["Message"]["properties"]["status"]
    assert "suppressed" in str(statuses) or "$ref" in str(statuses)


def test_the_spectacular_command_validates_without_warnings(db: None) -> None:
    out = StringIO()

    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)

    assert '"/api/v1/messages"' in out.getvalue()


# --- the docs page ------------------------------------------------------------------------------------


def test_the_docs_page_loads_only_self_hosted_assets_and_no_inline_code(client: HttpClient, db: None) -> None:
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<style" not in html
    assert "style=" not in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert len(scripts) == 3
    assert all(body.strip() == "" and "src=" in attrs for attrs, body in scripts)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls)
    assert any("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle" in url for url in urls)
    # the portal's CSP applies to the page
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_the_docs_start_script_is_javascript_pointing_at_the_schema(client: HttpClient, db: None) -> None:
    html = client.get("/api/v1/docs").content.decode()
    script_url = re.findall(r'<script src="([^"]+)"', html)[-1].replace("&amp;", "&")

    response = client.get(script_url)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert 'url: "/api/v1/openapi.json"' in response.content.decode()


def test_the_docs_assets_are_served_locally(client: HttpClient, db: None) -> None:
    html = client.get("/api/v1/docs").content.decode()

    for url in re.findall(r'(?:src|href)="(/static/[^"?]+)"', html):
        assert client.get(url).status_code == 200, url
