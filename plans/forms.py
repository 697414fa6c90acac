"""Forms of the Plan & usage page: overage settings, add-on orders and client caps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from plans.models import AddOnProduct, ClientAllocation, CreditAccount
from xes_portal.lib.domains import normalise_domain


class OverageSettingsForm(forms.ModelForm[CreditAccount]):
    """Allow overage or not, and an optional monthly limit in USD."""

    class Meta:
        model = CreditAccount
        fields = ("allow_overage", "monthly_overage_limit")
        labels = {"monthly_overage_limit": _("Monthly overage limit (USD)")}
        help_texts = {
            "monthly_overage_limit": _(
                "Optional. Leave empty for no limit. Sending that would cost more overage in one calendar month "
                "is refused."
            ),
        }
        widgets = {"monthly_overage_limit": forms.NumberInput(attrs={"min": "0", "step": "0.01"})}

    def clean_monthly_overage_limit(self) -> Decimal | None:
        value: Decimal | None = self.cleaned_data.get("monthly_overage_limit")
        if value is not None and value < 0:
            raise ValidationError(_("The limit cannot be negative. Leave it empty for no limit."))
        return value


class AddOnOrderForm(forms.Form):
    """An add-on for one domain; international domain names are welcome and stored as punycode."""

    product = forms.ModelChoiceField(
        queryset=AddOnProduct.objects.filter(orderable=True), label=_("Add-on"), empty_label=None
    )
    domain = forms.CharField(
        label=_("Domain"),
        max_length=253,
        help_text=_("The domain you send from, e.g. example.com. International names like müller.de work too."),
        widget=forms.TextInput(attrs={"placeholder": "example.com", "autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_domain(self) -> str:
        raw = self.cleaned_data["domain"]
        name = normalise_domain(raw)
        if "." not in name:
            raise ValidationError(_("Enter a full domain name, like example.com."))
        return name


class ClientCapForm(forms.ModelForm[ClientAllocation]):
    """A client's yearly cap: how much of the pool it may use, hard (refused beyond) or soft (warned)."""

    class Meta:
        model = ClientAllocation
        fields = ("yearly_cap", "mode", "period_start")
        labels = {"yearly_cap": _("E-mails per year"), "mode": _("Kind of cap"), "period_start": _("Cap year starts")}
        widgets = {
            "yearly_cap": forms.NumberInput(attrs={"min": "1", "step": "1"}),
            "period_start": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Short labels: the form sits in a narrow popover; the help text explains the difference.
        self.fields["mode"].choices = [  # type: ignore[attr-defined]
            (ClientAllocation.Mode.HARD, _("Hard: refuse beyond it")),
            (ClientAllocation.Mode.SOFT, _("Soft: warn only")),
        ]
        self.fields["mode"].help_text = _(
            "Hard refuses sending beyond the cap; soft keeps sending and warns the owners."
        )
        if self.instance.pk is None:
            self.fields["period_start"].initial = timezone.now().date()
