"""Templates and business rules: editing with save-time checks (line and column), a preview in a
sandboxed frame with chosen sample contacts, and test sends to verified addresses only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import ProtectedError, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import SenderAddress
from accounts.services import ServiceError
from campaigns.models import Contact, Rule, Template
from campaigns.rendering import RenderError, TemplateError, check_template, prepare
from campaigns.rules import RuleError, contact_fields, validate_rule
from xes_portal.lib.tenancy import get_for_membership

# Contacts the editor tries a template on when it is saved.
SAMPLE_CONTACTS = 3
# The preview frame: nothing of the e-mail may run, and it has no access to the portal's origin.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; font-src https: data:; "
    "frame-ancestors 'self'"
)


class TemplateForm(forms.ModelForm[Template]):
    class Meta:
        model = Template
        fields = ("name", "slug", "subject", "preheader", "source_format", "body", "text", "tracking")
        widgets = {
            "body": forms.Textarea(attrs={"rows": 18, "class": "font-monospace", "spellcheck": "false"}),
            "text": forms.Textarea(attrs={"rows": 6, "class": "font-monospace"}),
        }
        help_texts = {
            "slug": gettext_lazy("The name the API uses for this template, e.g. welcome."),
            "body": gettext_lazy(
                "Liquid: {{ contact.first_name }}, {{ data.order_id }}, {% if rules.vip %}…{% endif %}, and "
                "{{ message.unsubscribe_url }} for the unsubscribe link."
            ),
        }

    def __init__(self, *args: Any, organisation: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organisation = organisation
        self.fields["tracking"].label = _("Open and click tracking")
        self.fields["tracking"].widget.choices = [  # type: ignore[attr-defined]
            ("unknown", _("Promotional e-mail only (default)")),
            ("true", _("Always")),
            ("false", _("Never")),
        ]
        self.fields["tracking"].help_text = _("A campaign can decide otherwise for itself.")

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        clash = Template.objects.filter(organisation=self.organisation, slug=slug).exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError(_("Another template already uses this slug."))
        return slug

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        content = [f for f in self.Meta.fields if f != "tracking"]
        candidate = Template(organisation=self.organisation, **{f: data.get(f, "") for f in content})
        rules = list(Rule.objects.filter(organisation=self.organisation))
        samples = list(Contact.objects.filter(organisation=self.organisation)[:SAMPLE_CONTACTS])
        self.warnings = []
        for problem in check_template(candidate, rules, samples):
            if problem.severity != "error":
                self.warnings.append(problem)
                continue
            field = problem.part if problem.part in self.fields else None
            self.add_error(field, _problem_text(problem))
        return data


def _where(line: int | None, column: int | None) -> str:
    """The " (line 2, column 5)" suffix of an error with a position; empty without one."""
    if line is None:
        return ""
    return _(" (line %(line)s, column %(column)s)") % {"line": line, "column": column}


def _problem_text(problem: Any) -> str:
    sample = _(" – for %(email)s") % {"email": problem.sample} if problem.sample else ""
    return f"{problem.message}{_where(problem.line, problem.column)}{sample}"


def _templates(request: AuthedRequest):  # type: ignore[no-untyped-def]
    return Template.objects.for_membership(request.membership)


@membership_required()
def template_list(request: AuthedRequest) -> HttpResponse:
    return render(request, "campaigns/templates/list.html", {"templates": _templates(request)})


@membership_required(Perm.MANAGE_CAMPAIGNS)
def template_create(request: AuthedRequest) -> HttpResponse:
    return _template_form(request, Template(organisation=request.membership.organisation))


@membership_required()
def template_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    template = get_for_membership(_templates(request), request.membership, pk=pk)
    return _template_form(request, template)


def _template_form(request: AuthedRequest, template: Template) -> HttpResponse:
    can_edit = request.membership.can(Perm.MANAGE_CAMPAIGNS)
    form = TemplateForm(request.POST or None, instance=template, organisation=request.membership.organisation)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        if form.is_valid():
            template = form.save(commit=False)
            if request.membership.is_client_user:
                template.client_id = request.membership.client_id
            template.updated_at = timezone.now()
            template.save()
            for warning in getattr(form, "warnings", []):
                messages.warning(request, _problem_text(warning))
            messages.success(request, _("Template “%(name)s” saved.") % {"name": template.name})
            return redirect("campaigns:template_edit", pk=template.pk)
    return render(
        request,
        "campaigns/templates/form.html",
        {"form": form, "template": template, "can_edit": can_edit},
        status=400 if form.errors else 200,
    )


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def template_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    template = get_for_membership(_templates(request), request.membership, pk=pk)
    try:
        template.delete()
    except ProtectedError:
        messages.error(request, _("This template has been sent; it stays for the message log. Rename it instead."))
        return redirect("campaigns:template_edit", pk=template.pk)
    messages.success(request, _("Template deleted."))
    return redirect("campaigns:template_list")


def _sample_contacts(request: AuthedRequest):  # type: ignore[no-untyped-def]
    return Contact.objects.for_membership(request.membership).order_by("email")


def _chosen_contact(request: AuthedRequest, raw: str) -> Contact | None:
    """The contact a preview or test send is for (``?contact=<id>``), inside the caller's tenant."""
    return _sample_contacts(request).filter(pk=int(raw)).first() if raw.isdigit() else None


def _render_for(template: Template, contact: Contact | None) -> tuple[Any, str]:
    """The rendered template for a contact (or for no contact), or an error message."""
    rules = list(Rule.objects.filter(organisation=template.organisation_id))
    fields = contact_fields(contact) if contact is not None else {"email": "preview@example.com"}
    try:
        prepared = prepare(template, rules)
        message = {"unsubscribe_url": "#unsubscribe", "view_url": "#view"}
        return prepared.render(fields, {}, message), ""
    except (TemplateError, RenderError, RuleError) as exc:
        return None, str(exc)


@membership_required()
def template_preview(request: AuthedRequest, pk: int) -> HttpResponse:
    template = get_for_membership(_templates(request), request.membership, pk=pk)
    contacts = _sample_contacts(request)
    query = request.GET.get("q", "").strip()
    if query:
        contacts = contacts.filter(Q(email__icontains=query) | Q(last_name__icontains=query))
    choices = list(contacts[:20])
    contact_id = request.GET.get("contact", "")
    contact = next((c for c in choices if str(c.pk) == contact_id), None)
    contact = contact or _chosen_contact(request, contact_id) or (choices[0] if choices else None)
    rendered, error = _render_for(template, contact)
    senders = SenderAddress.objects.for_membership(request.membership).filter(verified_at__isnull=False)
    return render(
        request,
        "campaigns/templates/preview.html",
        {
            "template": template,
            "contacts": choices,
            "contact": contact,
            "query": query,
            "rendered": rendered,
            "error": error,
            "senders": senders,
        },
    )


@xframe_options_sameorigin
@membership_required()
def template_preview_frame(request: AuthedRequest, pk: int) -> HttpResponse:
    """The e-mail's HTML alone, for the preview's ``<iframe sandbox>``: its own CSP makes it an
    opaque origin without scripts, whatever the template contains."""
    template = get_for_membership(_templates(request), request.membership, pk=pk)
    contact = _chosen_contact(request, request.GET.get("contact", ""))
    rendered, error = _render_for(template, contact)
    response = HttpResponse(rendered.html if rendered else "", content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = PREVIEW_CSP
    response["Cache-Control"] = "no-store"
    if error:
        response.status_code = 422
    return response


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def template_test_send(request: AuthedRequest, pk: int) -> HttpResponse:
    """Send the template once to a verified sender address of the organisation (never elsewhere)."""
    from campaigns.sending import queue_triggered

    template = get_for_membership(_templates(request), request.membership, pk=pk)
    verified = SenderAddress.objects.for_membership(request.membership).filter(verified_at__isnull=False)
    sender = verified.filter(pk=request.POST.get("sender") or 0).select_related("sending_account").first()
    to = verified.filter(pk=request.POST.get("to") or 0).first()
    if sender is None or to is None:
        messages.error(request, _("Choose a verified sender address to send from and one to send to."))
        return redirect("campaigns:template_preview", pk=template.pk)
    contact = _chosen_contact(request, request.POST.get("contact", ""))
    data = {"_test_contact": contact_fields(contact)} if contact else {}
    try:
        queue_triggered(sender.sending_account, template, to.email, data, sender=sender, promotional=False)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Test e-mail to %(email)s queued.") % {"email": to.email_display})
    return redirect("campaigns:template_preview", pk=template.pk)


# --- rules ----------------------------------------------------------------------------------


class RuleForm(forms.ModelForm[Rule]):
    class Meta:
        model = Rule
        fields = ("name", "kind", "expression", "description")
        widgets = {"expression": forms.Textarea(attrs={"rows": 4, "class": "font-monospace", "spellcheck": "false"})}
        help_texts = {
            "name": gettext_lazy("Used as rules.<name> in templates and in segments, e.g. vip."),
            "expression": gettext_lazy(
                'A condition such as points > 100 and country == "DE", or for a computed value a Liquid '
                'template such as {% if country == "DE" %}Hallo{% else %}Hello{% endif %}.'
            ),
        }

    def __init__(self, *args: Any, organisation: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organisation = organisation

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        name = data["name"]
        if Rule.objects.filter(organisation=self.organisation, name=name).exclude(pk=self.instance.pk).exists():
            self.add_error("name", _("Another rule already has this name."))
            return data
        candidate = Rule(organisation=self.organisation, pk=self.instance.pk, **data)
        try:
            validate_rule(candidate, data["kind"], self.organisation)
        except RuleError as exc:
            self.add_error("expression", f"{exc.message}{_where(exc.line, exc.column)}")
        return data


def _rules(request: AuthedRequest):  # type: ignore[no-untyped-def]
    """Rules are the organisation's, shared by all its clients (client users use them too)."""
    return Rule.objects.filter(organisation=request.membership.organisation)


@membership_required()
def rule_list(request: AuthedRequest) -> HttpResponse:
    return render(request, "campaigns/rules/list.html", {"rules": _rules(request)})


@membership_required(Perm.MANAGE_CAMPAIGNS)
def rule_create(request: AuthedRequest) -> HttpResponse:
    return _rule_form(request, Rule(organisation=request.membership.organisation))


@membership_required(Perm.MANAGE_CAMPAIGNS)
def rule_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    return _rule_form(request, get_object_or_404(_rules(request), pk=pk))


def _rule_form(request: AuthedRequest, rule: Rule) -> HttpResponse:
    form = RuleForm(request.POST or None, instance=rule, organisation=request.membership.organisation)
    if request.method == "POST" and form.is_valid():
        rule = form.save(commit=False)
        rule.updated_at = timezone.now()
        rule.save()
        messages.success(request, _("Rule “%(name)s” saved.") % {"name": rule.name})
        return redirect("campaigns:rule_list")
    return render(
        request, "campaigns/rules/form.html", {"form": form, "rule": rule}, status=400 if form.errors else 200
    )


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def rule_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(_rules(request), pk=pk)
    others = Rule.objects.filter(organisation=rule.organisation_id).exclude(pk=rule.pk)
    users = [other.name for other in others if rule.name in other.expression]
    if users:
        messages.error(request, _("Rules %(names)s use this rule; change them first.") % {"names": ", ".join(users)})
    else:
        rule.delete()
        messages.success(request, _("Rule deleted."))
    return redirect("campaigns:rule_list")


urlpatterns = [
    path("templates/", template_list, name="template_list"),
    path("templates/new/", template_create, name="template_create"),
    path("templates/<int:pk>/", template_edit, name="template_edit"),
    path("templates/<int:pk>/delete/", template_delete, name="template_delete"),
    path("templates/<int:pk>/preview/", template_preview, name="template_preview"),
    path("templates/<int:pk>/preview/frame/", template_preview_frame, name="template_preview_frame"),
    path("templates/<int:pk>/test-send/", template_test_send, name="template_test_send"),
    path("rules/", rule_list, name="rule_list"),
    path("rules/new/", rule_create, name="rule_create"),
    path("rules/<int:pk>/", rule_edit, name="rule_edit"),
    path("rules/<int:pk>/delete/", rule_delete, name="rule_delete"),
]
