"""django-import-export resources (export only) for usage statements and the credit ledger.

Exports are opened in spreadsheets, and client names, reasons and account names are typed by
customers. A cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return)
would run as a formula in Excel or LibreOffice ("CSV injection"). Every text cell is therefore
prefixed with an apostrophe (OWASP's advice), which makes it plain text in CSV and XLSX alike.

django-import-export's own ``IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT`` is not enough: it only
drops the first ``=`` (``==1+1`` stays a formula), ignores ``+ - @``, and turns every number
into text. Leave it off; these resources escape by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import tablib
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from import_export import fields, resources, widgets
from import_export.formats import base_formats

from plans.models import CreditEntry
from plans.statements import StatementRow, term_label

# Characters that make a spreadsheet treat a text cell as a formula, including the full-width
# forms some locales accept, and tab / carriage return / line feed, which some importers strip.
FORMULA_TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")

FORMATS: dict[str, base_formats.Format] = {"csv": base_formats.CSV(), "xlsx": base_formats.XLSX()}


def escape_formula(value: str) -> str:
    """Prefix ``'`` to text a spreadsheet would evaluate; leading spaces do not hide a trigger."""
    if value and (value[0] in FORMULA_TRIGGERS or value.lstrip()[:1] in FORMULA_TRIGGERS):
        return "'" + value
    return value


class NativeNumberWidget(widgets.NumberWidget):
    """Integers and Decimals as they are: no locale thousands separators, exact in CSV, numbers in XLSX."""

    def __init__(self) -> None:
        super().__init__(coerce_to_string=False)

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        return "" if value is None else value


class UtcDateTimeWidget(widgets.Widget):
    """UTC, whatever the user's time zone: a real date in XLSX (which has no time zones), ISO text in CSV."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if not isinstance(value, datetime):
            return ""
        value = value.astimezone(UTC)
        if kwargs.get("force_native_type"):
            return value.replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")


class FormulaSafeMixin:
    """Escapes every text value a resource exports, whichever field or ``dehydrate_`` method made it."""

    def export_field(self, field: fields.Field, instance: Any, **kwargs: Any) -> Any:
        value = super().export_field(field, instance, **kwargs)  # type: ignore[misc]
        return escape_formula(value) if isinstance(value, str) else value


class StatementRowResource(FormulaSafeMixin, resources.Resource):
    """Lines of a usage statement (:class:`plans.statements.StatementRow`), in statement order."""

    period = fields.Field(attribute="period", column_name=_("Period"))
    client = fields.Field(attribute="client", column_name=_("Client"))
    sending_account = fields.Field(attribute="sending_account", column_name=_("Sending account"))
    included_used = fields.Field(
        attribute="included_used", column_name=_("Included e-mails used"), widget=NativeNumberWidget()
    )
    overage_emails = fields.Field(
        attribute="overage_emails", column_name=_("Overage e-mails"), widget=NativeNumberWidget()
    )
    price_per_1000 = fields.Field(
        attribute="price_per_1000", column_name=_("Price per 1,000 overage e-mails"), widget=NativeNumberWidget()
    )
    overage_amount = fields.Field(
        attribute="overage_amount", column_name=_("Overage amount"), widget=NativeNumberWidget()
    )
    currency = fields.Field(attribute="currency", column_name=_("Currency"))

    class Meta:
        export_order = (
            "period",
            "client",
            "sending_account",
            "included_used",
            "overage_emails",
            "price_per_1000",
            "overage_amount",
            "currency",
        )

    MONEY = frozenset({"price_per_1000", "overage_amount", "currency"})

    def export_rows(
        self, rows: Iterable[StatementRow], fmt: str, *, by_account: bool, with_money: bool = True
    ) -> tablib.Dataset:
        """The dataset for ``fmt``; the sending-account column only when the statement breaks it down,
        prices and amounts only for those who may see the organisation's billing."""
        names = [
            name
            for name in self._meta.export_order
            if (by_account or name != "sending_account") and (with_money or name not in self.MONEY)
        ]
        return self.export(list(rows), export_fields=names, force_native_type=FORMATS[fmt].is_binary())


class LedgerResource(FormulaSafeMixin, resources.ModelResource):
    """The credit ledger, one entry per line, for the XES team's exports."""

    id = fields.Field(attribute="id", column_name=_("ID"), widget=NativeNumberWidget())
    created_at = fields.Field(attribute="created_at", column_name=_("When (UTC)"), widget=UtcDateTimeWidget())
    organisation = fields.Field(attribute="organisation__name", column_name=_("Organisation"))
    kind = fields.Field(attribute="kind", column_name=_("Kind"))
    emails = fields.Field(attribute="emails", column_name=_("E-mails"), widget=NativeNumberWidget())
    term = fields.Field(attribute="subscription", column_name=_("Term"))
    client = fields.Field(attribute="client__name", column_name=_("Client"))
    sending_account = fields.Field(attribute="sending_account__name", column_name=_("Sending account"))
    price_per_1000 = fields.Field(
        attribute="price_per_1000", column_name=_("Overage price per 1,000"), widget=NativeNumberWidget()
    )
    reason = fields.Field(attribute="reason", column_name=_("Reason"))
    created_by = fields.Field(attribute="created_by__email", column_name=_("By"))

    class Meta:
        model = CreditEntry
        fields = export_order = (
            "id",
            "created_at",
            "organisation",
            "kind",
            "emails",
            "term",
            "client",
            "sending_account",
            "price_per_1000",
            "reason",
            "created_by",
        )

    def dehydrate_term(self, entry: CreditEntry) -> str:
        term = entry.subscription
        if term is None:
            return str(_("Overage")) if entry.is_overage else ""
        return term_label(term)

    def export_entries(self, entries: QuerySet[CreditEntry], fmt: str) -> tablib.Dataset:
        """The dataset for ``fmt``, with the related names loaded in the same query."""
        queryset = entries.select_related(
            "organisation", "subscription__plan", "client", "sending_account", "created_by"
        ).order_by("created_at", "pk")
        return self.export(queryset, force_native_type=FORMATS[fmt].is_binary())


def render(dataset: tablib.Dataset, fmt: str) -> bytes:
    """The file content of ``dataset`` in ``fmt`` (``csv`` as UTF-8, ``xlsx``)."""
    data = FORMATS[fmt].export_data(dataset)
    return data.encode("utf-8") if isinstance(data, str) else data


def content_type(fmt: str) -> str:
    """The MIME type of ``fmt``, with the charset for text formats."""
    kind = FORMATS[fmt].get_content_type()
    return f"{kind}; charset=utf-8" if fmt == "csv" else kind
