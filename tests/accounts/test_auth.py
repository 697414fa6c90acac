"""Sign-up creates an organisation; e-mail confirmation is mandatory; TOTP 2FA with recovery codes;
allauth's rate limits are on."""

from __future__ import annotations

import re

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal import auth as totp_auth
from allauth.mfa.totp.internal.auth import TOTP

from accounts.models import Membership, User
from tests.factories import PASSWORD, UserFactory

SIGNUP = {
    "email": "new.owner@agency.example",
    "organisation_name": "Neue Agentur GmbH",
    "password1": "a-long-secret-phrase",
    "password2": "a-long-secret-phrase",
}


def _current_code(secret: str) -> str:
    counter = next(iter(totp_auth.yield_hotp_counters_from_time()))
    return totp_auth.format_hotp_value(totp_auth.hotp_value(secret, counter))


def test_signup_creates_an_organisation_with_the_user_as_owner(client, db, mailoutbox) -> None:
    response = client.post("/accounts/signup/", SIGNUP)

    assert response.status_code == 302
    user = User.objects.get(email="new.owner@agency.example")
    membership = Membership.objects.get(user=user)
    assert membership.organisation.name == "Neue Agentur GmbH"
    assert membership.role == Membership.Role.OWNER
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["new.owner@agency.example"]


def test_signup_without_a_company_name_is_refused_with_a_message(client, db) -> None:
    response = client.post("/accounts/signup/", {**SIGNUP, "organisation_name": ""})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not User.objects.exists()


def test_the_portal_is_closed_until_the_email_is_confirmed(client, db, mailoutbox) -> None:
    client.post("/accounts/signup/", SIGNUP)
    client.logout()

    response = client.post("/accounts/login/", {"login": SIGNUP["email"], "password": SIGNUP["password1"]})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/confirm-email/")
    assert client.get("/").status_code == 302  # still anonymous: sent back to the login


def test_confirming_the_email_logs_the_user_in(client, db, mailoutbox) -> None:
    client.post("/accounts/signup/", SIGNUP)
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mailoutbox[0].body)
    assert link, mailoutbox[0].body
    path = "/" + link.group(0).split("/", 3)[3]

    assert client.get(path).status_code == 200  # GET only shows the confirm button
    response = client.post(path)

    assert response.status_code == 302
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert "Neue Agentur GmbH" in dashboard.content.decode()


def test_totp_activation_issues_recovery_codes_that_log_in(client, db) -> None:
    user = UserFactory(email="secure@agency.example")
    Membership.objects.create(user=user, organisation_id=_org().pk, role=Membership.Role.OWNER)
    login = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert login.status_code == 302, login.content.decode()[-3000:]

    # allauth asks for the password again before a security change
    assert client.get("/accounts/2fa/totp/activate/").status_code == 302
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200, (page.status_code, page.get("Location"))
    secret = client.session[totp_auth.SECRET_SESSION_KEY]
    response = client.post("/accounts/2fa/totp/activate/", {"code": _current_code(secret)})

    assert response.status_code == 302
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    codes = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES).wrap().get_unused_codes()
    assert len(codes) >= 10

    client.post("/accounts/logout/")
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/").status_code == 302  # the password alone is not enough
    response = client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_login_with_totp_needs_the_current_code(client, db) -> None:
    user = UserFactory(email="totp@agency.example")
    Membership.objects.create(user=user, organisation_id=_org().pk, role=Membership.Role.OWNER)
    secret = totp_auth.generate_totp_secret()
    TOTP.activate(user, secret)

    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000" if _current_code(secret) != "000000" else "1"})
    assert wrong.status_code == 200
    assert client.get("/").status_code == 302

    client.post("/accounts/2fa/authenticate/", {"code": _current_code(secret)})
    assert client.get("/").status_code == 200


def test_repeated_failed_logins_are_rate_limited(client, db) -> None:
    user = UserFactory(email="target@agency.example")
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": user.email, "password": "wrong-password"})
        assert response.status_code == 200

    # even the right password is refused while the limit holds
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})

    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert client.get("/").status_code == 302


def _org():  # type: ignore[no-untyped-def]
    from tests.factories import OrganisationFactory

    return OrganisationFactory()


def test_password_reset_by_email_sets_a_new_password(client, db, mailoutbox) -> None:
    user = UserFactory(email="forgetful@agency.example")

    client.post("/accounts/password/reset/", {"email": "Forgetful@agency.example"})

    assert len(mailoutbox) == 1
    link = re.search(r"https?://\S+(/accounts/password/reset/key/\S+/)", mailoutbox[0].body)
    assert link, mailoutbox[0].body
    form_page = client.get(link.group(1), follow=True)
    assert form_page.status_code == 200
    response = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else link.group(1),
        {"password1": "a-brand-new-phrase", "password2": "a-brand-new-phrase"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-brand-new-phrase")
    assert not user.check_password(PASSWORD)
