"""The API's error answers: always JSON with a human ``detail``.

* 400 adds ``errors``: the messages per field (``{"to": ["Enter a valid e-mail address…"]}``), and
  ``detail`` repeats them in one line for logs.
* Refusals of a valid request (402, 403, 409, 422) add a machine-readable ``code``.
* 401 and 404 carry only ``detail`` (the 401 body is part of the published contract).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class Refused(exceptions.APIException):
    """A well-formed request that cannot be carried out; ``code`` says why, ``detail`` explains it."""

    status_code = status.HTTP_409_CONFLICT

    def __init__(self, detail: str, code: str, status_code: int | None = None) -> None:
        super().__init__(detail, code)
        self.refusal_code = code
        if status_code is not None:
            self.status_code = status_code


def flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error structure as ``{"field" or "field.sub": [messages]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = str(key) if not prefix else f"{prefix}.{key}"
            for field, messages in flatten(value, name).items():
                flat.setdefault(field, []).extend(messages)
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict | list):
                for field, messages in flatten(item, prefix).items():
                    flat.setdefault(field, []).extend(messages)
            else:
                flat.setdefault(prefix or "non_field_errors", []).append(str(item))
    else:
        flat.setdefault(prefix or "non_field_errors", []).append(str(errors))
    return flat


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with our body shapes (see the module docstring)."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
        summary = "; ".join(
            message if field == "non_field_errors" else f"{field}: {message}"
            for field, messages in errors.items()
            for message in messages
        )
        response.data = {"detail": summary or str(_("The request is invalid.")), "errors": errors}
    elif isinstance(exc, Refused):
        response.data = {"detail": str(exc.detail), "code": exc.refusal_code}
    return response


# --- documentation of the bodies (drf-spectacular reads these serializers) -----------------------


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField(help_text=_("What went wrong, in plain words."))


class ValidationErrorSerializer(ErrorSerializer):
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text=_("The messages per field; `non_field_errors` for the request as a whole."),
    )


class RefusalSerializer(ErrorSerializer):
    code = serializers.CharField(help_text=_("A stable, machine-readable reason."))
