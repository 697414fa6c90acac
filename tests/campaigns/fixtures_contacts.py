"""Helpers of the contact and import tests: the URLs with the contact pages mounted under
``/campaigns/`` (as the project's root URLconf will have them) and small file builders."""

from __future__ import annotations

import io
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile


def upload(name: str, content: bytes | str, encoding: str = "utf-8") -> SimpleUploadedFile:
    """An uploaded file; text is encoded with ``encoding`` (BOM included for ``utf-8-sig``/``utf-16``)."""
    data = content.encode(encoding) if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    """A one-sheet workbook with these rows."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
