"""Shared fixtures: real PostgreSQL and Redis (fail, never skip, without them) and the personas
(owner, admin, member, client-user, outsider) of one organisation with two clients."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.operations.special import RunPython
from django.test import Client as HttpClient

from accounts.models import Client, Membership, Organisation, SenderAddress, SendingAccount, User
from tests.factories import (
    ClientFactory,
    MembershipFactory,
    OrganisationFactory,
    SenderAddressFactory,
    SendingAccountFactory,
    UserFactory,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite runs against the real services; a missing one is an error, not a skip."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(f"Tests need PostgreSQL (DATABASE_URL); got {engine}. Use `make test`.", returncode=2)
    if not settings.REDIS_URL:
        pytest.exit("Tests need Redis (REDIS_URL). Use `make test`.", returncode=2)
    try:
        redis.Redis.from_url(settings.REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis at {settings.REDIS_URL} is not reachable: {exc}", returncode=2)


def rerun_data_migrations() -> None:
    """Run our apps' data migrations (``RunPython``) again, each with the models as of its migration.

    Live-server tests are transactional: after each, Django empties every table, including the rows
    that data migrations wrote (the plan catalogue). Ours are idempotent (``update_or_create``), so
    running them again restores those rows. Django's own apps refill theirs on ``post_migrate``."""
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    base_dir = Path(settings.BASE_DIR).resolve()
    for migration, _backwards in executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True):
        app_path = Path(apps.get_app_config(migration.app_label).path).resolve()
        if not app_path.is_relative_to(base_dir) or ".venv" in app_path.parts:
            continue
        if not any(isinstance(op, RunPython) for op in migration.operations):
            continue
        state = executor.loader.project_state((migration.app_label, migration.name), at_end=False)
        for operation in migration.operations:
            if isinstance(operation, RunPython):
                with connection.schema_editor() as editor:
                    operation.code(state.apps, editor)
            else:
                operation.state_forwards(migration.app_label, state)


@pytest.fixture(scope="session", autouse=True)
def _seeded_data(django_db_setup: None, django_db_blocker: Any) -> None:
    """Transactional tests (browser, concurrency) end with a flush that also empties the tables our
    data migrations filled; with ``--reuse-db`` a later session would start without those rows."""
    if not connections[DEFAULT_DB_ALIAS].settings_dict["NAME"].startswith("test_"):
        return  # pytest-django sets up no test database when no collected test needs one
    with django_db_blocker.unblock():
        rerun_data_migrations()


@pytest.fixture(autouse=True)
def _data_migrations_in_transactional_tests(request: pytest.FixtureRequest) -> None:
    """pytest-django runs transactional tests last; each may follow another one's flush."""
    marker = request.node.get_closest_marker("django_db")
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        request.getfixturevalue("transactional_db")
    elif marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("_django_db_helper")
    else:
        return
    rerun_data_migrations()


@pytest.fixture(autouse=True)
def _flush_redis() -> Any:
    """Each test starts with empty queues, cache and rate-limit counters."""
    conn = redis.Redis.from_url(settings.REDIS_URL)
    conn.flushdb()
    yield
    conn.flushdb()


@dataclass
class Tenant:
    organisation: Organisation
    client_a: Client
    client_b: Client
    account_org: SendingAccount
    account_a: SendingAccount
    account_b: SendingAccount
    sender_a: SenderAddress
    sender_b: SenderAddress
    owner: User
    admin: User
    member: User
    client_user: User  # bound to client_a


@pytest.fixture
def tenant(db: None) -> Tenant:
    org = OrganisationFactory(name="Acme Agency")
    client_a = ClientFactory(organisation=org, name="Alpha Bakery")
    client_b = ClientFactory(organisation=org, name="Beta Cars")
    account_org = SendingAccountFactory(organisation=org, name="Acme main")
    account_a = SendingAccountFactory(organisation=org, client=client_a, name="Alpha account")
    account_b = SendingAccountFactory(organisation=org, client=client_b, name="Beta account")
    owner = MembershipFactory(organisation=org, role=Membership.Role.OWNER, user__email="owner@acme.example").user
    admin = MembershipFactory(organisation=org, role=Membership.Role.ADMIN, user__email="admin@acme.example").user
    member = MembershipFactory(organisation=org, role=Membership.Role.MEMBER, user__email="member@acme.example").user
    client_user = MembershipFactory(
        organisation=org, role=Membership.Role.CLIENT_USER, client=client_a, user__email="alpha@acme.example"
    ).user
    return Tenant(
        organisation=org,
        client_a=client_a,
        client_b=client_b,
        account_org=account_org,
        account_a=account_a,
        account_b=account_b,
        sender_a=SenderAddressFactory(sending_account=account_a, email="news@alpha.example"),
        sender_b=SenderAddressFactory(sending_account=account_b, email="news@beta.example"),
        owner=owner,
        admin=admin,
        member=member,
        client_user=client_user,
    )


@pytest.fixture
def outsider(db: None) -> User:
    """Owner of another organisation, with its own client and account."""
    membership = MembershipFactory(role=Membership.Role.OWNER, user__email="owner@other.example")
    SendingAccountFactory(organisation=membership.organisation, name="Other account")
    return membership.user


@pytest.fixture
def login(client: HttpClient) -> Any:
    def _login(user: User) -> HttpClient:
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def staff_user(db: None) -> User:
    return UserFactory(email="team@xes.example", is_staff=True, is_superuser=True)
