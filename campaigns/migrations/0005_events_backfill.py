"""Data: events written before 0004 get their message's organisation, sending account, campaign and
recipient domain (the columns 0006 makes required)."""

from django.db import migrations

FORWARD = """
UPDATE campaigns_messageevent e
SET organisation_id = m.organisation_id,
    sending_account_id = m.sending_account_id,
    campaign_id = m.campaign_id,
    recipient_domain = lower(substr(m.to_email, strpos(m.to_email, '@') + 1))
FROM campaigns_message m
WHERE m.id = e.message_id AND e.organisation_id IS NULL
"""


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)
        schema_editor.execute("DELETE FROM campaigns_messageevent WHERE organisation_id IS NULL")
        return
    MessageEvent = apps.get_model("campaigns", "MessageEvent")
    for event in MessageEvent.objects.filter(organisation__isnull=True).select_related("message"):
        message = event.message
        event.organisation_id = message.organisation_id
        event.sending_account_id = message.sending_account_id
        event.campaign_id = message.campaign_id
        event.recipient_domain = message.to_email.rpartition("@")[2].lower()
        event.save(update_fields=["organisation", "sending_account", "campaign", "recipient_domain"])


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0004_events_and_links")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
