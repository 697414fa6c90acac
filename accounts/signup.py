"""The extra sign-up field for allauth: signing up creates the user's own organisation."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _


class SignupExtraForm(forms.Form):
    organisation_name = forms.CharField(
        label=_("Company name"),
        max_length=200,
        help_text=_("Your agency or company: the service provider that sends for its clients."),
    )

    def signup(self, request: HttpRequest, user: object) -> None:
        from accounts import services

        services.create_organisation(user, self.cleaned_data["organisation_name"])  # type: ignore[arg-type]
