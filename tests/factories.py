"""factory-boy factories for the tenancy models."""

from __future__ import annotations

import factory
from allauth.account.models import EmailAddress
from django.utils import timezone

from accounts.models import ApiKey, Client, Membership, Organisation, SenderAddress, SendingAccount, User

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def verified_email(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Agency {n}")


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Client {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = Membership.Role.OWNER


class SendingAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SendingAccount

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Account {n}")


class SenderAddressFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderAddress

    sending_account = factory.SubFactory(SendingAccountFactory)
    email = factory.Sequence(lambda n: f"sender{n}@example.com")
    display_name = "News"


class VerifiedSenderFactory(SenderAddressFactory):
    verified_at = factory.LazyFunction(timezone.now)


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiKey

    sending_account = factory.SubFactory(SendingAccountFactory)
    name = "Workflow server"
    prefix = factory.Sequence(lambda n: f"{n:08x}")
    hashed_key = factory.Sequence(lambda n: f"{n:064x}")
