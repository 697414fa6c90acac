"""Campaigns: contacts and lists, segments, templates and personalisation rules, bulk campaigns
and triggered messages, tracking, events and analytics."""
