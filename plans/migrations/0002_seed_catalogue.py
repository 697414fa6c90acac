"""Seed the default plan catalogue and the add-ons (PRODUCT.md); the XES team edits them in the admin."""

from __future__ import annotations

from django.db import migrations

from plans.constants import DEFAULT_CATALOGUE

ADDONS = [
    ("advanced_sender", "Advanced Sender Package",
     "SPF and DMARC on top of DKIM, branded links on your own domain, domain set-up services."),
    ("dedicated_ip", "Dedicated IP",
     "Your own sending IP with automatic warm-up; recommended from 175,000 e-mails per day on average."),
    ("additional_account", "Additional sending account",
     "Another account with its own reputation, so one client's reputation cannot hurt another."),
]


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    Plan = apps.get_model("plans", "Plan")
    AddOnProduct = apps.get_model("plans", "AddOnProduct")
    for order, (code, name, emails, price, eligibility, free, renewable, orderable) in enumerate(DEFAULT_CATALOGUE):
        Plan.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "emails_per_year": emails,
                "price_per_1000": price,
                "eligibility": eligibility,
                "free_first_year": free,
                "renewable": renewable,
                "orderable": orderable,
                "annual_fee": 0 if eligibility in {"new_cross_media", "cloud_emedia"} else None,
                "sort_order": order,
            },
        )
    for kind, name, description in ADDONS:
        AddOnProduct.objects.update_or_create(kind=kind, defaults={"name": name, "description": description})


def unseed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("plans", "Plan").objects.filter(code__in=[row[0] for row in DEFAULT_CATALOGUE]).delete()
    apps.get_model("plans", "AddOnProduct").objects.filter(kind__in=[row[0] for row in ADDONS]).delete()


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
