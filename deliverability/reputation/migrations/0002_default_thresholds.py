"""Seed the reputation thresholds with the defaults of PRODUCT.md ("Reputation thresholds"); the XES
team edits them in the admin. Idempotent: an existing row (maybe edited) is left as it is."""

from __future__ import annotations

from decimal import Decimal

from django.db import migrations

DEFAULTS = {
    "warning_bounce_rate": Decimal("2"),
    "probation_bounce_rate": Decimal("4"),
    "suspended_bounce_rate": Decimal("8"),
    "warning_complaint_rate": Decimal("0.08"),
    "probation_complaint_rate": Decimal("0.1"),
    "suspended_complaint_rate": Decimal("0.3"),
    "window_days": 7,
    "min_deliveries": 500,
    "review_complaints": 3,
    "review_hard_bounces": 25,
    "clean_days": 7,
    "probations_to_suspend": 3,
    "probation_period_days": 90,
    "probation_rate_factor": Decimal("0.5"),
    "platform_bounce_alarm": Decimal("4"),
    "platform_complaint_alarm": Decimal("0.08"),
}


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("reputation", "Thresholds").objects.get_or_create(pk=1, defaults=DEFAULTS)


def unseed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("reputation", "Thresholds").objects.filter(pk=1).delete()


class Migration(migrations.Migration):
    dependencies = [("reputation", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
