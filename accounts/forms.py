"""Forms of the portal's account pages. Choices are always scoped to the user's tenant."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import ModelChoiceIterator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts import services
from accounts.models import Client, Membership, Organisation, SendingAccount, User, time_zone_choices


class OrganisationForm(forms.ModelForm[Organisation]):
    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        choices=time_zone_choices,
        help_text=_("Scheduled sends and reports are shown in this time zone."),
    )

    class Meta:
        model = Organisation
        fields = ("name", "billing_email", "time_zone")


class ClientForm(forms.ModelForm[Client]):
    class Meta:
        model = Client
        fields = ("name", "contact_email", "notes", "is_active")
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, organisation: Organisation, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organisation = organisation

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = Client.objects.filter(organisation=self.organisation, name__iexact=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError(_("You already have a client called “%(name)s”.") % {"name": name})
        return name


def sending_account_limit_message(allowed: int, count: int) -> str:
    """Why no further sending account can be created, and what to do about it."""
    have = ngettext(
        "Your plan allows %(allowed)d sending account and your organisation has %(count)d.",
        "Your plan allows %(allowed)d sending accounts and your organisation has %(count)d.",
        allowed,
    ) % {"allowed": allowed, "count": count}
    order = gettext(
        "Each further account needs the “Additional sending account” add-on, which an owner can order "
        "under Add-ons on the Plan & usage page."
    )
    return f"{have} {order}"


class SendingAccountForm(forms.ModelForm[SendingAccount]):
    """Create or edit a sending account. Creating one checks the plan's allowance of accounts.

    The check locks the organisation row, so the caller must hold a transaction from
    ``is_valid()`` until ``save()`` (the view does): two people creating the last allowed
    account at the same moment are then served one after the other, and only one succeeds.
    """

    class Meta:
        model = SendingAccount
        fields = ("name", "client")
        help_texts = {
            "client": _("Optional. An account of its own keeps this client's reputation apart from the others."),
        }

    def __init__(self, *args: Any, membership: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organisation = membership.organisation
        self.limit_reached = False
        self.fields["client"].queryset = Client.objects.for_membership(membership)  # type: ignore[attr-defined]
        self.fields["client"].empty_label = _("— none (the organisation's own) —")  # type: ignore[attr-defined]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = SendingAccount.objects.filter(organisation=self.organisation, name__iexact=name).exclude(
            pk=self.instance.pk
        )
        if clash.exists():
            raise ValidationError(_("You already have a sending account called “%(name)s”.") % {"name": name})
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None:
            self._check_allowance()
        return data

    def _check_allowance(self) -> None:
        """Refuse a new account beyond what the plan allows (no rule registered: no limit)."""
        # Lock first, then count: a concurrent create waits here until ours has committed, and then
        # counts our account too. (select_for_update outside a transaction raises, so a caller that
        # forgot the transaction fails loudly instead of racing.)
        Organisation.objects.select_for_update().get(pk=self.organisation.pk)
        allowed = services.sending_accounts_allowed(self.organisation)
        if allowed is None:
            return
        count = SendingAccount.objects.filter(organisation=self.organisation).count()
        if count >= allowed:
            self.limit_reached = True
            raise ValidationError(sending_account_limit_message(allowed, count), code="limit")


class SenderAddressForm(forms.Form):
    sending_account = forms.ModelChoiceField(queryset=SendingAccount.objects.none(), label=_("Sending account"))
    email = forms.CharField(
        label=_("E-mail address"), max_length=254, help_text=_("We send a confirmation link to it.")
    )
    # No field-level length or stripping: clean_display_name() gives one clear message for every
    # problem, and a trailing CR/LF is refused rather than silently dropped.
    display_name = forms.CharField(
        label=_("Display name"), required=False, strip=False, help_text=_("Shown as the sender, e.g. “Acme News”.")
    )

    def __init__(self, *args: Any, membership: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        accounts = SendingAccount.objects.for_membership(membership)
        self.fields["sending_account"].queryset = accounts  # type: ignore[attr-defined]
        if accounts.count() == 1:
            self.fields["sending_account"].initial = accounts.first()

    def clean_email(self) -> str:
        return services.normalise_email(self.cleaned_data["email"])

    def clean_display_name(self) -> str:
        return services.clean_display_name(self.cleaned_data["display_name"])


class ApiKeyForm(forms.Form):
    sending_account = forms.ModelChoiceField(queryset=SendingAccount.objects.none(), label=_("Sending account"))
    name = forms.CharField(
        label=_("Name"), max_length=100, help_text=_("Where the key is used, e.g. “uProduce production server”.")
    )

    def __init__(self, *args: Any, membership: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sending_account"].queryset = SendingAccount.objects.for_membership(membership)  # type: ignore[attr-defined]


class _FetchedChoices(ModelChoiceIterator):
    """Choices from objects fetched once: a page with one form per row then costs one query, not one per row."""

    def __init__(self, field: forms.ModelChoiceField, objects: list[Any]) -> None:  # type: ignore[type-arg]
        super().__init__(field)
        self.objects = objects

    def __iter__(self) -> Any:
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in self.objects:
            yield self.choice(obj)

    def __len__(self) -> int:
        return len(self.objects) + (1 if self.field.empty_label is not None else 0)

    def __bool__(self) -> bool:
        return self.field.empty_label is not None or bool(self.objects)


class _RoleClientMixin(forms.Form):
    def _scope_clients(self, organisation: Organisation) -> None:
        self.fields["client"].queryset = Client.objects.for_organisation(organisation)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("role") == Membership.Role.CLIENT_USER and not data.get("client"):
            self.add_error("client", _("Choose the client whose data this client user may see."))
        return data


class InviteForm(_RoleClientMixin):
    email = forms.CharField(label=_("E-mail address"), max_length=254)
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.MEMBER)
    client = forms.ModelChoiceField(
        queryset=Client.objects.none(),
        required=False,
        label=_("Client"),
        empty_label=_("— choose a client —"),
        help_text=_("Only for client users."),
    )

    def __init__(self, *args: Any, organisation: Organisation, can_invite_owner: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scope_clients(organisation)
        if not can_invite_owner:
            self.fields["role"].choices = [c for c in Membership.Role.choices if c[0] != Membership.Role.OWNER]  # type: ignore[attr-defined]

    def clean_email(self) -> str:
        return services.normalise_email(self.cleaned_data["email"]).lower()


class RoleForm(_RoleClientMixin):
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices)
    client = forms.ModelChoiceField(
        queryset=Client.objects.none(), required=False, label=_("Client"), empty_label=_("— choose a client —")
    )

    def __init__(
        self, *args: Any, organisation: Organisation, clients: list[Client] | None = None, **kwargs: Any
    ) -> None:
        """``clients``: the organisation's clients, fetched once for a page of many role forms."""
        super().__init__(*args, **kwargs)
        self._scope_clients(organisation)
        if clients is not None:
            field: Any = self.fields["client"]
            field.choices = _FetchedChoices(field, clients)


class AcceptInvitationSignupForm(forms.Form):
    """For an invited person without a login: choose a password (the link proved the address)."""

    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label=_("Password (again)"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict[str, Any]:
        from django.contrib.auth.password_validation import validate_password

        data = super().clean() or {}
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("The two passwords differ."))
        elif p1:
            try:
                validate_password(p1, User(email=self.email))
            except ValidationError as exc:
                self.add_error("password1", exc)
        return data
