"""Deliverability: domains (DKIM, SPF, DMARC, tracking domain), DNS checks, delivery providers,
dedicated IPs and warm-up, suppression lists, reputation metrics and account standing."""
