"""Reputation monitoring per sending account (PRODUCT.md, "Reputation thresholds").

Owns: the per-day counters fed by :data:`deliverability.signals.provider_event`, the editable
thresholds, the scheduled evaluation that moves an account between good, warning, probation and
suspended (with history and reasons), the alarms for the XES team, the customer's reputation page
and the admin where the XES team reviews, notes and lifts.
"""
