"""Accounts: users, organisations (service providers), clients, memberships and roles,
sending accounts (the unit of reputation), sender addresses and their verification, API keys."""
