"""Automation: what happens by itself when recipients act, for each organisation.

Owns:
- **trigger rules** (the FAQ's triggered e-mail): "when a recipient clicks link L (or any link),
  opens, or does not open within N days in campaign C, send template T from sender S". Fired from
  :data:`campaigns.signals.message_events` (clicks and opens; machine events never fire) and by the
  minute tick (not opened), through the normal sending pipeline
  (:func:`campaigns.sending.queueing.queue_triggered`), once per rule and recipient: the unique
  :class:`~campaigns.automation.models.Firing` row decides, also between concurrent events;
- **outgoing webhooks**: endpoints that receive the organisation's message events as signed JSON
  POSTs (HMAC-SHA256), delivered by RQ jobs with retries and exponential backoff, with a delivery log;
  every destination is resolved and refused if it is not a public internet address
  (:mod:`campaigns.automation.netguard`), at save time and again at each delivery.
"""
