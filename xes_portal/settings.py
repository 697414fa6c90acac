"""Settings for XES Portal, read from environment variables (see ``.env.example``).

With no variables at all the portal runs for development: SQLite file database, local-memory
cache, console e-mail. ``DJANGO_ENV=production`` switches on the production profile, which
refuses to start without a secret key and allowed hosts and passes ``check --deploy``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

from xes_portal.lib.env import envbool, envint, envlist, envstr

# Lets generic Django classes (ModelForm[Client], QuerySet[User]) be subscripted at runtime.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DJANGO_ENV = envstr("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}: use development, production or test.")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = envbool("DEBUG", default=not PRODUCTION)
SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required in production.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-xes-portal-0123456789"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required in production.")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

# The public base URL is used in e-mails (verification and invitation links).
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "django_htmx",
    "django_rq",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "xes_portal",
    "accounts",
    "plans",
    "deliverability",
    "deliverability.reputation",
    "campaigns",
    "campaigns.analytics",
    "campaigns.automation",
]

MIDDLEWARE = [
    # Open pixel and click redirects (/t/...): answered first, also on verified branded tracking hosts.
    "campaigns.tracking.middleware.TrackingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.MembershipMiddleware",
]

ROOT_URLCONF = "xes_portal.urls"
WSGI_APPLICATION = "xes_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.membership",
            ],
        },
    },
]

# Database: SQLite file for `make run`, PostgreSQL (psycopg 3) from DATABASE_URL elsewhere.
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", 60 if PRODUCTION else 0),
        conn_health_checks=True,
    )
}
if PRODUCTION and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    raise ImproperlyConfigured("Production needs DATABASE_URL pointing at PostgreSQL.")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The zero-setup SQLite of `make run` cannot enforce "one contact per address and client" for
# contacts without a client (NULLS NOT DISTINCT); PostgreSQL, used everywhere else, does.
SILENCED_SYSTEM_CHECKS = ["models.W047"] if DATABASES["default"]["ENGINE"].endswith("sqlite3") else []

# Redis backs the cache (and so every rate limit) and the RQ job queues. Without REDIS_URL the
# cache is process-local and no worker can run; `make run` starts an embedded Redis-compatible
# server and sets REDIS_URL for the portal and the worker.
REDIS_URL = envstr("REDIS_URL")
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("Production needs REDIS_URL.")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
RQ_QUEUES = {
    name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": 600}
    for name in ("default", "sending", "low")
}
RQ_SHOW_ADMIN_LINK = True

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"

# django-allauth: login by e-mail, mandatory confirmation, TOTP + recovery codes, rate limits on.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.signup.SignupExtraForm"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[XES] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "XES Portal"

# E-mail through Django 6's MAILERS. Development prints to the console; production uses SMTP.
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "XES Portal <no-reply@xes.example>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
MAILERS = {
    "default": {
        "BACKEND": envstr(
            "EMAIL_BACKEND",
            "django.core.mail.backends.smtp.EmailBackend"
            if PRODUCTION
            else "django.core.mail.backends.console.EmailBackend",
        ),
        "OPTIONS": (
            {
                "host": envstr("EMAIL_HOST", "localhost"),
                "port": envint("EMAIL_PORT", 587),
                "username": envstr("EMAIL_HOST_USER"),
                "password": envstr("EMAIL_HOST_PASSWORD"),
                "use_tls": envbool("EMAIL_USE_TLS", default=True),
            }
            if PRODUCTION
            else {}
        ),
    }
}

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("de", _("German"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Outside production, static files are served straight from the source folders (no collectstatic).
WHITENOISE_AUTOREFRESH = not PRODUCTION
WHITENOISE_USE_FINDERS = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# REST API (DESIGN.md: /api/v1/, key auth, OpenAPI schema and offline docs).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["campaigns.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["campaigns.api.authentication.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "campaigns.api.errors.handle_exception",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "XES Portal API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Uploaded files (contact imports): never served by the web server, read only by the import job.
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "/media/"

# Delivery (DESIGN.md "Delivery providers"): `sandbox` keeps mail in the database, `ses` uses
# Amazon SES v2 with credentials from the usual AWS environment variables or instance role.
DELIVERY_PROVIDER = envstr("DELIVERY_PROVIDER", "sandbox")
if DELIVERY_PROVIDER not in ("sandbox", "ses"):
    raise ImproperlyConfigured(f"DELIVERY_PROVIDER must be sandbox or ses, not {DELIVERY_PROVIDER!r}.")
AWS_REGION = envstr("AWS_REGION", "eu-central-1")
SES_NAME_PREFIX = envstr("SES_NAME_PREFIX", "xes")  # configuration sets, tenants and IP pools
SES_EVENT_TOPIC_ARN = envstr("SES_EVENT_TOPIC_ARN")  # SNS topic receiving each account's events
SNS_TOPIC_ARNS = envlist("SNS_TOPIC_ARNS")  # further topics /webhooks/ses/ accepts (comma-separated)
SNS_NOTIFICATION_RETENTION_DAYS = envint("SNS_NOTIFICATION_RETENTION_DAYS", 30)  # raw SNS messages kept
SES_TENANTS = envbool("SES_TENANTS", default=True)  # one SES tenant per sending account, where available
# The sandbox's simulated account quota (to try the sending engine's quota and pause handling).
SANDBOX_MAX_24_HOUR_SEND = envint("SANDBOX_MAX_24_HOUR_SEND", 50_000)
SANDBOX_MAX_SEND_RATE = float(envstr("SANDBOX_MAX_SEND_RATE", "14"))
SANDBOX_SENDING_ENABLED = envbool("SANDBOX_SENDING_ENABLED", default=True)

# Sending: provider calls one SES batch job keeps in flight, and the share of the provider's rate
# the limiter aims for (a little under it, so that scheduling jitter never pushes a second over).
SENDING_THREADS = envint("SENDING_THREADS", 32)
SENDING_RATE_HEADROOM = float(envstr("SENDING_RATE_HEADROOM", "0.99"))

# DNS checks: empty DNS_NAMESERVERS uses the system resolver; entries are "ip" or "ip:port".
DNS_NAMESERVERS = envlist("DNS_NAMESERVERS")
DNS_TIMEOUT = float(envstr("DNS_TIMEOUT", "4"))
# Branded tracking domains are CNAMEs to this host (the portal's tracking host).
TRACKING_CNAME_TARGET = envstr("TRACKING_CNAME_TARGET", urlsplit(SITE_URL).hostname or "localhost")

# Customers' webhook endpoints (campaigns.automation): https only in production; endpoints that
# resolve to private, loopback or link-local addresses are refused unless allowed here (development).
WEBHOOKS_ALLOW_HTTP = envbool("WEBHOOKS_ALLOW_HTTP", default=DEBUG)
WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = envbool("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", default=False)
WEBHOOKS_TIMEOUT = float(envstr("WEBHOOKS_TIMEOUT", "10"))

# Sender-address verification (PRODUCT.md: the link must be clicked within 24 hours).
SENDER_VERIFICATION_MAX_AGE = 24 * 60 * 60
SENDER_VERIFICATION_RESEND_INTERVAL = envint("SENDER_VERIFICATION_RESEND_INTERVAL", 60)
SENDER_VERIFICATION_MAX_PER_HOUR = envint("SENDER_VERIFICATION_MAX_PER_HOUR", 5)
INVITATION_MAX_AGE = 7 * 24 * 60 * 60

# Security. Django's built-in Content Security Policy: no inline scripts, nothing from other hosts.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True

if DJANGO_ENV == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

FORM_RENDERER = "xes_portal.lib.forms.FormRenderer"
