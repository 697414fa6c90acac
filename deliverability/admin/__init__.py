"""Admin of deliverability, one module per area (each registers its own models)."""

from deliverability.admin import domains, ips, notifications, suppressions

__all__ = ["domains", "ips", "notifications", "suppressions"]
