"""Incoming provider webhooks: Amazon SES events through Amazon SNS at ``POST /webhooks/ses/``.

- :mod:`.sns` checks an SNS message: fields, topic allowlist, certificate URL, certificate and
  signature (versions 1 and 2). It never fetches anything but an SNS signing certificate.
- :mod:`.views` stores every accepted message raw (:class:`~deliverability.models.SnsNotification`)
  before anything else and answers at once; a job does the rest.
- :mod:`.processing` is that job's work: confirm subscriptions through the SNS API, turn SES events
  into :data:`deliverability.signals.provider_event`, once per SNS message.
"""
