"""Plan & usage pages (being written)."""
