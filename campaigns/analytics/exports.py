"""CSV exports of the analytics reports: one table of a report per file.

Domain names, link URLs and campaign, account and client names are typed by customers or come from
recipients' addresses, and spreadsheets run a cell that starts with ``=`` as a formula: every text
cell goes through the project's :func:`plans.resources.escape_formula`. Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.analytics.reports import Figures, Row, Series
from plans.resources import escape_formula

# (Figures attribute, column heading) of every exported table, in this order.
FIGURE_COLUMNS = (
    ("sent", gettext_lazy("Sent")),
    ("delivered", gettext_lazy("Delivered")),
    ("hard_bounces", gettext_lazy("Hard bounces")),
    ("soft_bounces", gettext_lazy("Soft bounces")),
    ("complaints", gettext_lazy("Complaints")),
    ("rejects", gettext_lazy("Rejected")),
    ("unique_opens_shown", gettext_lazy("Unique opens")),
    ("opens_shown", gettext_lazy("Opens")),
    ("machine_opens", gettext_lazy("Machine opens")),
    ("unique_clicks_shown", gettext_lazy("Unique clicks")),
    ("clicks_shown", gettext_lazy("Clicks")),
    ("machine_clicks", gettext_lazy("Machine clicks")),
    ("unsubscribes", gettext_lazy("Unsubscribes")),
    ("delivery_rate", gettext_lazy("Delivery rate (%)")),
    ("open_rate", gettext_lazy("Open rate (%)")),
    ("click_rate", gettext_lazy("Click rate (%)")),
    ("bounce_rate", gettext_lazy("Hard bounce rate (%)")),
    ("complaint_rate", gettext_lazy("Complaint rate (%)")),
)
LINK_COLUMNS = (
    ("unique_clicks_shown", gettext_lazy("Unique clicks")),
    ("clicks_shown", gettext_lazy("Clicks")),
    ("machine_clicks", gettext_lazy("Machine clicks")),
)


def cell(value: Any) -> Any:
    """A CSV cell: text escaped against formulas, numbers as they are, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_formula(value)
    return value


def figure_cells(figures: Figures, columns: Sequence[tuple[str, Any]] = FIGURE_COLUMNS) -> list[Any]:
    return [cell(getattr(figures, attr)) for attr, _heading in columns]


def csv_bytes(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 with a byte-order mark, so that spreadsheets read accents right."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([escape_formula(str(h)) for h in header])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def response(filename: str, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> HttpResponse:
    result = HttpResponse(csv_bytes(header, rows), content_type="text/csv; charset=utf-8")
    result["Content-Disposition"] = content_disposition_header(True, filename)
    return result


def summary_rows(title: str, since: Any, until: Any, figures: Figures) -> tuple[list[Any], list[list[Any]]]:
    header = [_("Report"), _("From (UTC)"), _("To (UTC)"), *(h for _a, h in FIGURE_COLUMNS)]
    span = [f"{t.astimezone(UTC):%Y-%m-%d %H:%M}" if t else "" for t in (since, until)]
    return header, [[title, *span, *figure_cells(figures)]]


def series_rows(data: Series) -> tuple[list[Any], list[list[Any]]]:
    heading = _("Hour") if data.kind == "hour" else _("Day")
    header = [heading, *(h for _a, h in FIGURE_COLUMNS)]
    fmt = "%Y-%m-%d %H:%M" if data.kind == "hour" else "%Y-%m-%d"
    return header, [[at.strftime(fmt), *figure_cells(f)] for at, f in data.rows]


def breakdown_rows(heading: str, rows: Iterable[Row], *, link: bool = False) -> tuple[list[Any], list[list[Any]]]:
    columns = LINK_COLUMNS if link else FIGURE_COLUMNS
    return [heading, *(h for _a, h in columns)], [[row.label, *figure_cells(row.figures, columns)] for row in rows]
