"""Portal pages for the organisation, its members, clients, sending accounts, senders and API keys.

Views parse input, call :mod:`accounts.services` and render. Every object is fetched through
:func:`xes_portal.lib.tenancy.get_for_membership`, so another tenant's object answers 404.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import services
from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.forms import (
    AcceptInvitationSignupForm,
    ApiKeyForm,
    ClientForm,
    InviteForm,
    OrganisationForm,
    RoleForm,
    SenderAddressForm,
    SendingAccountForm,
    sending_account_limit_message,
)
from accounts.http import AuthedRequest
from accounts.middleware import SESSION_KEY
from accounts.models import ApiKey, Client, Invitation, Membership, SenderAddress, SendingAccount, User
from xes_portal.lib.tenancy import get_for_membership


def _initial(request: HttpRequest, **fields: str) -> dict[str, str]:
    """Form initial values from query parameters that are present (``?account=3``); absent ones are
    left out so that a form's own default (the only account) still applies."""
    return {name: request.GET[param] for name, param in fields.items() if request.GET.get(param)}


def _form_needing_an_account(request: AuthedRequest, template: str, form: forms.Form) -> HttpResponse:
    """A form that needs a sending account; without one the page says how to create it first."""
    has_accounts = SendingAccount.objects.for_membership(request.membership).exists()
    return render(request, template, {"form": form, "has_accounts": has_accounts}, status=400 if form.errors else 200)


def _add_errors(form: object, exc: ValidationError) -> None:
    for message in exc.messages:
        form.add_error(None, message)  # type: ignore[attr-defined]


# --- dashboard and organisation -----------------------------------------------------------


@membership_required()
def dashboard(request: AuthedRequest) -> HttpResponse:
    m = request.membership
    accounts = SendingAccount.objects.for_membership(m)
    senders = SenderAddress.objects.for_membership(m)
    standing = dict(accounts.values_list("standing").annotate(n=Count("pk")).values_list("standing", "n"))
    sender_counts = senders.aggregate(
        verified=Count("pk", filter=Q(verified_at__isnull=False)),
        pending=Count("pk", filter=Q(verified_at__isnull=True)),
    )
    clients_count = Client.objects.for_membership(m).count()
    keys_count = ApiKey.objects.for_membership(m).active().count()
    steps = [
        {
            "done": clients_count > 0,
            "label": _("Add a client"),
            "url": reverse("client_create"),
            "hidden": not m.can(Perm.MANAGE_CLIENTS),
        },
        {
            "done": accounts.exists(),
            "label": _("Create a sending account"),
            "url": reverse("account_create"),
            "hidden": not m.can(Perm.MANAGE_SENDING_ACCOUNTS),
        },
        {
            "done": sender_counts["verified"] > 0,
            "label": _("Verify a sender address"),
            "url": reverse("sender_create"),
            "hidden": not m.can(Perm.MANAGE_SENDERS),
        },
        {
            "done": keys_count > 0,
            "label": _("Create an API key for your workflow server"),
            "url": reverse("api_key_create"),
            "hidden": not m.can(Perm.MANAGE_API_KEYS),
        },
    ]
    visible = [s for s in steps if not s["hidden"]]
    return render(
        request,
        "accounts/dashboard.html",
        {
            "clients_count": clients_count,
            "accounts_count": accounts.count(),
            "standing": [(s, standing.get(s.value, 0)) for s in SendingAccount.Standing],
            "sender_counts": sender_counts,
            "keys_count": keys_count,
            "steps": visible,
            "steps_done": sum(1 for s in visible if s["done"]),
            "recent_senders": senders.select_related("sending_account").order_by("-created_at")[:5],
        },
    )


@membership_required()
def organisation_settings(request: AuthedRequest) -> HttpResponse:
    organisation = request.membership.organisation
    form = OrganisationForm(instance=organisation)
    if request.method == "POST":
        if not request.membership.can(Perm.MANAGE_ORGANISATION):
            raise PermissionDenied
        form = OrganisationForm(request.POST, instance=organisation)
        if form.is_valid():
            form.save()
            messages.success(request, _("Organisation settings saved."))
            return redirect("organisation_settings")
    return render(
        request,
        "accounts/organisation.html",
        {"form": form, "organisation": organisation},
        status=400 if form.errors else 200,
    )


@require_POST
@membership_required()
def switch_organisation(request: AuthedRequest, organisation_id: int) -> HttpResponse:
    membership = Membership.objects.filter(user=request.user, organisation_id=organisation_id).first()
    if membership is None:
        raise Http404
    request.session[SESSION_KEY] = membership.organisation_id
    return redirect("dashboard")


# --- members ------------------------------------------------------------------------------


@membership_required(Perm.VIEW_MEMBERS)
def member_list(request: AuthedRequest) -> HttpResponse:
    m = request.membership
    invite_form = InviteForm(organisation=m.organisation, can_invite_owner=m.can(Perm.MANAGE_MEMBERS))
    return _render_members(request, invite_form)


def _render_members(request: AuthedRequest, invite_form: InviteForm, status: int = 200) -> HttpResponse:
    m = request.membership
    members = Membership.objects.for_membership(m).select_related("user", "client").order_by("user__email")
    invitations = Invitation.objects.for_membership(m).filter(accepted_at__isnull=True).select_related("client")
    manage = m.can(Perm.MANAGE_MEMBERS)
    clients = list(Client.objects.for_organisation(m.organisation)) if manage else []
    rows = [
        (
            member,
            RoleForm(
                organisation=m.organisation,
                clients=clients,
                initial={"role": member.role, "client": member.client_id},
                prefix=f"m{member.pk}",
            )
            if manage
            else None,
        )
        for member in members
    ]
    return render(
        request,
        "accounts/members.html",
        {
            "rows": rows,
            "invitations": invitations,
            "invite_form": invite_form,
            "manage_members": manage,
        },
        status=status,
    )


@require_POST
@membership_required(Perm.INVITE_MEMBERS)
def member_invite(request: AuthedRequest) -> HttpResponse:
    m = request.membership
    form = InviteForm(request.POST, organisation=m.organisation, can_invite_owner=m.can(Perm.MANAGE_MEMBERS))
    if form.is_valid():
        try:
            with transaction.atomic():
                services.invite_member(
                    m.organisation,
                    form.cleaned_data["email"],
                    form.cleaned_data["role"],
                    form.cleaned_data["client"],
                    request.user,
                )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
            return redirect("member_list")
    return _render_members(request, form, status=400)


@require_POST
@membership_required(Perm.MANAGE_MEMBERS)
def member_change_role(request: AuthedRequest, pk: int) -> HttpResponse:
    member = get_for_membership(Membership.objects, request.membership, pk=pk)
    form = RoleForm(request.POST, organisation=request.membership.organisation, prefix=f"m{pk}")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect("member_list")
    try:
        services.change_role(member, form.cleaned_data["role"], form.cleaned_data["client"])
    except (ValidationError, services.ServiceError) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(
            request, _("%(email)s is now %(role)s.") % {"email": member.user.email, "role": member.get_role_display()}
        )
    return redirect("member_list")


@require_POST
@membership_required(Perm.MANAGE_MEMBERS)
def member_remove(request: AuthedRequest, pk: int) -> HttpResponse:
    member = get_for_membership(Membership.objects, request.membership, pk=pk)
    try:
        services.remove_member(member)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("%(email)s was removed.") % {"email": member.user.email})
    return redirect("member_list")


@require_POST
@membership_required(Perm.INVITE_MEMBERS)
def invitation_revoke(request: AuthedRequest, pk: int) -> HttpResponse:
    invitation = get_for_membership(Invitation.objects.filter(accepted_at__isnull=True), request.membership, pk=pk)
    invitation.delete()
    messages.success(request, _("The invitation to %(email)s was withdrawn.") % {"email": invitation.email})
    return redirect("member_list")


def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the link from the invitation e-mail. Creates a login if the person has none."""
    invitation = services.load_invitation(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=410)
    existing = User.objects.filter(email__iexact=invitation.email).first()
    form = None
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                membership = services.accept_invitation(invitation, request.user)  # type: ignore[arg-type]
            except services.ServiceError as exc:
                messages.error(request, str(exc))
            else:
                request.session[SESSION_KEY] = membership.organisation_id
                messages.success(request, _("Welcome to %(org)s.") % {"org": invitation.organisation.name})
                return redirect("dashboard")
    elif existing is None:
        form = AcceptInvitationSignupForm(request.POST or None, email=invitation.email)
        if request.method == "POST" and form.is_valid():
            try:
                # One transaction: if the invitation was used meanwhile, no login is left behind.
                with transaction.atomic():
                    user = _create_invited_user(invitation.email, form.cleaned_data["password1"])
                    membership = services.accept_invitation(invitation, user)
            except services.ServiceError:
                return render(request, "accounts/invitation_invalid.html", status=410)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_KEY] = membership.organisation_id
            messages.success(request, _("Welcome to %(org)s.") % {"org": invitation.organisation.name})
            return redirect("dashboard")
    return render(
        request,
        "accounts/invitation_accept.html",
        {
            "invitation": invitation,
            "form": form,
            "has_login": existing is not None,
            "login_url": reverse("account_login") + "?next=" + request.path,
        },
    )


def _create_invited_user(email: str, password: str) -> User:
    from allauth.account.models import EmailAddress

    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password)
        # The invitation link reached this inbox, which proves the address.
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


# --- clients ------------------------------------------------------------------------------


@membership_required()
def client_list(request: AuthedRequest) -> HttpResponse:
    clients = Client.objects.for_membership(request.membership).annotate(
        accounts_count=Count("sending_accounts", distinct=True),
        users_count=Count("memberships", distinct=True),
    )
    return render(request, "accounts/clients.html", {"clients": clients})


@membership_required(Perm.MANAGE_CLIENTS)
def client_create(request: AuthedRequest) -> HttpResponse:
    return _client_form(request, Client(organisation=request.membership.organisation))


@membership_required()
def client_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    client = get_for_membership(Client.objects, request.membership, pk=pk)
    accounts = (
        SendingAccount.objects.for_membership(request.membership)
        .filter(client=client)
        .annotate(senders_count=Count("sender_addresses"))
    )
    return render(request, "accounts/client_detail.html", {"client": client, "accounts": accounts})


@membership_required(Perm.MANAGE_CLIENTS)
def client_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    return _client_form(request, get_for_membership(Client.objects, request.membership, pk=pk))


def _client_form(request: AuthedRequest, client: Client) -> HttpResponse:
    form = ClientForm(request.POST or None, instance=client, organisation=request.membership.organisation)
    if request.method == "POST" and form.is_valid():
        client = form.save()
        messages.success(request, _("Client “%(name)s” saved.") % {"name": client.name})
        return redirect("client_detail", pk=client.pk)
    return render(
        request, "accounts/client_form.html", {"form": form, "client": client}, status=400 if form.errors else 200
    )


# --- sending accounts ---------------------------------------------------------------------


def _account_allowance(membership: Membership) -> dict[str, Any] | None:
    """How many sending accounts the organisation has and may have ("N of M accounts"); ``None``
    when no limit applies or for client-users, who see only their client's part of the organisation."""
    if membership.is_client_user:
        return None
    allowed = services.sending_accounts_allowed(membership.organisation)
    if allowed is None:
        return None
    count = SendingAccount.objects.filter(organisation=membership.organisation).count()
    return {
        "count": count,
        "allowed": allowed,
        "reached": count >= allowed,
        "message": sending_account_limit_message(allowed, count),
    }


@membership_required()
def account_list(request: AuthedRequest) -> HttpResponse:
    accounts = (
        SendingAccount.objects.for_membership(request.membership)
        .select_related("client")
        .annotate(
            senders_count=Count("sender_addresses", distinct=True),
            verified_count=Count(
                "sender_addresses", filter=Q(sender_addresses__verified_at__isnull=False), distinct=True
            ),
        )
    )
    return render(
        request,
        "accounts/sending_accounts.html",
        {"accounts": accounts, "allowance": _account_allowance(request.membership)},
    )


@membership_required(Perm.MANAGE_SENDING_ACCOUNTS)
def account_create(request: AuthedRequest) -> HttpResponse:
    return _account_form(
        request,
        SendingAccount(organisation=request.membership.organisation),
        initial=_initial(request, client="client"),
    )


@membership_required(Perm.MANAGE_SENDING_ACCOUNTS)
def account_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    return _account_form(request, get_for_membership(SendingAccount.objects, request.membership, pk=pk))


def _account_form(
    request: AuthedRequest, account: SendingAccount, initial: dict[str, str] | None = None
) -> HttpResponse:
    creating = account.pk is None
    form = SendingAccountForm(request.POST or None, instance=account, membership=request.membership, initial=initial)
    if request.method == "POST":
        # One transaction from validation to the insert: a new account is checked against the
        # plan's allowance under a lock on the organisation that form.clean() takes.
        with transaction.atomic():
            saved = form.save() if form.is_valid() else None
        if saved is not None:
            messages.success(request, _("Sending account “%(name)s” saved.") % {"name": saved.name})
            return redirect("account_detail", pk=saved.pk)
    allowance = _account_allowance(request.membership) if creating else None
    return render(
        request,
        "accounts/sending_account_form.html",
        {
            "form": form,
            "account": account,
            "allowance": allowance,
            # Nothing to fill in when the allowance is used up: the page explains instead.
            "show_form": not (creating and allowance and allowance["reached"] and not form.is_bound),
        },
        status=400 if form.errors else 200,
    )


@membership_required()
def account_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    """The account with its senders and API keys; its deliverability (domains, standing, suppression
    list) loads from the deliverability app's panels with htmx, because accounts must not import it."""
    account = get_for_membership(SendingAccount.objects.select_related("client"), request.membership, pk=pk)
    return render(
        request,
        "accounts/sending_account_detail.html",
        {
            "account": account,
            "senders": account.sender_addresses.all(),
            "keys": account.api_keys.all(),
        },
    )


# --- sender addresses ---------------------------------------------------------------------


@membership_required()
def sender_list(request: AuthedRequest) -> HttpResponse:
    senders = SenderAddress.objects.for_membership(request.membership).select_related("sending_account__client")
    has_accounts = SendingAccount.objects.for_membership(request.membership).exists()
    return render(request, "accounts/senders.html", {"senders": senders, "has_accounts": has_accounts})


@membership_required(Perm.MANAGE_SENDERS)
def sender_create(request: AuthedRequest) -> HttpResponse:
    form = SenderAddressForm(
        request.POST or None, membership=request.membership, initial=_initial(request, sending_account="account")
    )
    if request.method == "POST" and form.is_valid():
        try:
            sender = services.add_sender_address(
                form.cleaned_data["sending_account"],
                form.cleaned_data["email"],
                form.cleaned_data["display_name"],
                request.user,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(
                request,
                _("We sent a confirmation link to %(email)s. It is valid for 24 hours.")
                % {"email": sender.email_display},
            )
            return redirect("sender_list")
    return _form_needing_an_account(request, "accounts/sender_form.html", form)


@require_POST
@membership_required(Perm.MANAGE_SENDERS)
def sender_resend(request: AuthedRequest, pk: int) -> HttpResponse:
    sender = get_for_membership(
        SenderAddress.objects.select_related("sending_account__organisation"), request.membership, pk=pk
    )
    try:
        services.send_sender_verification(sender)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("A new link was sent to %(email)s.") % {"email": sender.email_display})
    return redirect("sender_list")


@require_POST
@membership_required(Perm.MANAGE_SENDERS)
def sender_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    sender = get_for_membership(SenderAddress.objects, request.membership, pk=pk)
    sender.delete()
    messages.success(request, _("%(email)s was removed.") % {"email": sender.email_display})
    return redirect("sender_list")


def verify_sender(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the link from the verification e-mail. GET only shows; the POST verifies.

    Mail scanners fetch links before people do, so opening the link must change nothing.
    """
    if request.method == "POST":
        check = services.confirm_sender(token)
        if check.status == services.LinkStatus.VALID:
            return render(request, "accounts/verify_done.html", {"sender": check.sender})
    else:
        check = services.check_sender_token(token)
    status = {
        services.LinkStatus.VALID: 200,
        services.LinkStatus.EXPIRED: 410,
        services.LinkStatus.USED: 410,
        services.LinkStatus.INVALID: 404,
    }[check.status]
    return render(request, "accounts/verify.html", {"check": check, "token": token}, status=status)


@require_POST
def verify_sender_resend(request: HttpRequest, token: str) -> HttpResponse:
    """Public: a new link for an expired or superseded one. A tampered link gets nothing."""
    check = services.check_sender_token(token)
    if check.sender is None or check.status == services.LinkStatus.INVALID:
        return render(request, "accounts/verify.html", {"check": check, "token": token}, status=404)
    try:
        services.send_sender_verification(check.sender)
    except services.RateLimited as exc:
        response = render(
            request, "accounts/verify.html", {"check": check, "token": token, "error": str(exc)}, status=429
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except services.ServiceError as exc:
        return render(request, "accounts/verify.html", {"check": check, "token": token, "error": str(exc)}, status=400)
    return render(request, "accounts/verify_resent.html", {"sender": check.sender})


# --- API keys -----------------------------------------------------------------------------


@membership_required()
def api_key_list(request: AuthedRequest) -> HttpResponse:
    keys = ApiKey.objects.for_membership(request.membership).select_related("sending_account", "created_by")
    return render(request, "accounts/api_keys.html", {"keys": keys})


@never_cache
@membership_required(Perm.MANAGE_API_KEYS)
def api_key_create(request: AuthedRequest) -> HttpResponse:
    form = ApiKeyForm(
        request.POST or None, membership=request.membership, initial=_initial(request, sending_account="account")
    )
    if request.method == "POST" and form.is_valid():
        key, raw = services.create_api_key(
            form.cleaned_data["sending_account"], form.cleaned_data["name"], request.user
        )
        # The raw key is rendered once, in this response only; it is never stored.
        return render(request, "accounts/api_key_created.html", {"key": key, "raw_key": raw})
    return _form_needing_an_account(request, "accounts/api_key_form.html", form)


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def api_key_revoke(request: AuthedRequest, pk: int) -> HttpResponse:
    key = get_for_membership(ApiKey.objects, request.membership, pk=pk)
    services.revoke_api_key(key)
    messages.success(request, _("API key “%(name)s” was revoked; requests with it now fail.") % {"name": key.name})
    return HttpResponseRedirect(reverse("api_key_list"))
