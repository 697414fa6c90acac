"""Plain words for the problems the DNS checks store (``{"code": ..., "params": {...}}``).

The sentences are looked up when shown, so each reader gets their own language. They are written
for someone who runs an agency, not a name server: what is wrong, why it matters, what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from deliverability.models import DnsRecord

Status = DnsRecord.Status

STATUS_HELP: dict[str, Promise] = {
    Status.PENDING: _("We have not looked this record up yet."),
    Status.OK: _("The record is published exactly as it should be."),
    Status.WARNING: _("The record works, but something about it could be better; see the notes."),
    Status.MISSING: _("We could not find this record. Add it at your DNS provider."),
    Status.WRONG: _("A record exists, but its value is not right. Change it to the value shown."),
    Status.CONFLICT: _("Several records compete here; receivers then trust none of them. Keep only one."),
    Status.UNKNOWN: _(
        "We could not ask DNS this time (no answer or a server error). Nothing changes; we will try again."
    ),
}

_REASONS: dict[str, Promise] = {
    "timeout": _(
        "The DNS servers for %(name)s did not answer in time. This is usually temporary; we keep the "
        "last result and will check again."
    ),
    "servfail": _(
        "The DNS servers for %(name)s answered with an error (SERVFAIL). Often the domain's DNS settings "
        "at the registrar are broken or incomplete. We keep the last result and will check again."
    ),
    "no_nameservers": _(
        "No DNS server could be reached to look up %(name)s. We keep the last result and will check again."
    ),
}

MESSAGES: dict[str, Promise] = {
    "dns_unknown": _("The lookup of %(name)s did not succeed. We keep the last result and will check again."),
    "record_missing": _(
        "There is no %(rtype)s record at %(name)s yet. Add the record shown here at your DNS provider; "
        "changes can take up to an hour to appear."
    ),
    # Ownership
    "ownership_wrong": _(
        "%(name)s has a different verification code (%(found)s). Replace it with %(expected)s, or add ours next to it."
    ),
    # CNAME records (Easy DKIM, branded links)
    "cname_wrong_target": _(
        "%(name)s points to %(found)s instead of %(expected)s. Change the CNAME record so that it points "
        "to %(expected)s."
    ),
    "cname_other_record": _(
        "%(name)s has a %(found_type)s record (%(found)s) where a CNAME record pointing to %(expected)s "
        "belongs. Delete that record and add the CNAME record instead."
    ),
    # Own DKIM key
    "dkim_multiple": _(
        "There are %(count)s DKIM records at %(name)s; receivers cannot tell which one to use. Keep only the "
        "one shown here."
    ),
    "dkim_unparsable": _(
        "The DKIM record at %(name)s cannot be read (the problem is near “%(term)s”). Replace it with the "
        "value shown here, copied in one piece."
    ),
    "dkim_wrong_key_type": _(
        "The DKIM record at %(name)s declares a %(found)s key, but your key is %(expected)s. Replace it with "
        "the value shown here."
    ),
    "dkim_revoked": _(
        "The DKIM record at %(name)s has an empty key, which tells receivers the key was withdrawn. Replace "
        "it with the value shown here."
    ),
    "dkim_key_mismatch": _(
        "The DKIM record at %(name)s contains a different key than yours, so your signatures will fail. "
        "Replace it with the value shown here; long keys are easily cut off when pasting."
    ),
    # Custom MAIL FROM (MX)
    "mx_wrong_host": _(
        "The MX record of %(name)s points to %(found)s instead of %(expected)s. Change it to %(expected)s."
    ),
    "mx_extra_hosts": _(
        "%(name)s has further MX records (%(extra)s) next to %(expected)s. Bounces must reach only "
        "%(expected)s; delete the others."
    ),
    # SPF
    "spf_multiple": _(
        "%(name)s has %(count)s SPF records; receivers then ignore all of them. Merge them into one record "
        "that starts with v=spf1 and contains all the include: entries."
    ),
    "spf_too_many_lookups": _(
        "The SPF record of %(name)s needs too many DNS lookups (%(count)s of %(limit)s allowed), so receivers "
        "reject it as broken. Remove include: entries for services you no longer use, or replace some with "
        "their ip4: addresses."
    ),
    "spf_too_many_void_lookups": _(
        "The SPF record of %(name)s refers to %(count)s names that do not exist (at most %(limit)s are "
        "tolerated); some receivers treat the record as broken. Remove the entries for names that are gone."
    ),
    "spf_syntax": _(
        "The SPF record of %(name)s contains an error at “%(term)s”, so receivers ignore the whole record. "
        "Correct or remove that part."
    ),
    "spf_terms_after_all": _(
        "In the SPF record of %(name)s, %(terms)s come after the “all” entry and are never read. Move them before it."
    ),
    "spf_no_all": _(
        "The SPF record of %(name)s does not end with an “all” entry, so it says nothing about other "
        "senders. Add ~all at the end."
    ),
    "spf_plus_all": _(
        "The SPF record of %(name)s allows the whole internet to send e-mail in your name (“+all”). Replace "
        "it with ~all immediately."
    ),
    "spf_neutral_all": _(
        "The SPF record of %(name)s ends with ?all, which gives receivers no guidance about other senders. "
        "Use ~all instead."
    ),
    "spf_ptr": _(
        "The SPF record of %(name)s uses “ptr”, which is slow and ignored by many receivers. Replace it with "
        "ip4:/ip6: or include: entries."
    ),
    "spf_loop": _(
        "The SPF record of %(name)s includes %(target)s, which leads back to a record already being read. "
        "Remove that include:."
    ),
    "spf_include_without_spf": _(
        "The SPF record of %(name)s includes %(target)s, but %(target)s has no SPF record, so receivers treat "
        "yours as broken. Check the spelling or remove that include:."
    ),
    "spf_redirect_without_spf": _(
        "The SPF record of %(name)s redirects to %(target)s, but %(target)s has no SPF record. Check the "
        "spelling or remove the redirect=."
    ),
    "spf_target_multiple": _(
        "The SPF record of %(name)s refers to %(target)s, which has %(count)s SPF records, so receivers treat "
        "it as broken. Ask whoever runs %(target)s to merge them, or remove the reference."
    ),
    "spf_missing_include": _(
        "The SPF record of %(name)s does not authorise us to send for you: add include:%(include)s before "
        "the “all” entry."
    ),
    # DMARC
    "dmarc_multiple": _(
        "%(name)s has %(count)s DMARC records; receivers then ignore all of them. Keep only the one shown here."
    ),
    "dmarc_syntax": _(
        "The DMARC record contains “%(term)s”, which is not of the form tag=value. Replace the record with "
        "the value shown here."
    ),
    "dmarc_duplicate_tag": _(
        "In the DMARC record the tag %(tag)s appears twice; receivers treat the record as broken. Keep it once."
    ),
    "dmarc_version_not_first": _(
        "The DMARC record must start with v=DMARC1; receivers ignore it otherwise. Move v=DMARC1 to the front."
    ),
    "dmarc_bad_version": _(
        "The DMARC record says v=%(found)s, but only v=DMARC1 exists; receivers ignore it. Change it to v=DMARC1."
    ),
    "dmarc_unknown_tag": _(
        "The DMARC record contains the unknown tag “%(tag)s”, which receivers ignore. It may be a typo; "
        "compare it with the value shown here."
    ),
    "dmarc_missing_p": _(
        "The DMARC record has no policy (p=). Newer receivers treat that as p=none, older ones may ignore "
        "the record. Add the policy shown here."
    ),
    "dmarc_invalid_value": _(
        "In the DMARC record, %(tag)s=%(value)s is not a valid value; receivers use the default instead. "
        "Use the value shown here."
    ),
    "dmarc_pct": _(
        "The DMARC policy applies to only %(pct)s%% of your failing messages (pct=%(pct)s). That is fine "
        "while you ramp up; remove pct when you are ready."
    ),
    "dmarc_testing": _(
        "The DMARC record is in testing mode (t=y): receivers apply a milder policy than the one stated. "
        "Remove t=y when you are ready."
    ),
    "dmarc_invalid_report_uri": _(
        "The report address “%(uri)s” in %(tag)s= is not a valid mailto: address; reports will not arrive. "
        "Write it as mailto:name@example.com."
    ),
    "dmarc_report_not_authorised": _(
        "Reports go to %(address)s, at another domain, and %(report_domain)s has not confirmed that it "
        "accepts them, so receivers will not send them. Ask its owner to publish the TXT record "
        "%(record)s with the value v=DMARC1."
    ),
    "dmarc_policy_mismatch": _(
        "The DMARC policy is p=%(found)s, but the current step of your rollout is p=%(expected)s. Change "
        "the record to the value shown here."
    ),
    "dmarc_policy_ahead": _(
        "The DMARC policy is already p=%(found)s, stricter than the current step p=%(expected)s. That is "
        "fine if your reports show all your e-mail passing."
    ),
    "dmarc_rua_missing": _(
        "The DMARC record does not send reports to %(address)s, so you will not see who sends e-mail in "
        "your name. Add it to rua=."
    ),
}

_MISSING_P_WITHOUT_RUA = _(
    "The DMARC record has neither a policy (p=) nor a report address, so receivers ignore it. Replace it "
    "with the value shown here."
)
_GENERIC = _("There is a problem with this record (%(code)s). Compare it with the value shown here.")


class _Params(dict[str, Any]):
    """Formatting parameters: lists joined for reading, absent ones empty rather than a KeyError."""

    def __missing__(self, key: str) -> str:
        return ""


def _readable(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(item) for item in value)
    return value


def describe(problem: Mapping[str, Any]) -> str:
    """One stored problem as a sentence in the active language."""
    code = str(problem.get("code", ""))
    raw_params = problem.get("params") or {}
    params = _Params({key: _readable(value) for key, value in raw_params.items()})
    if code == "dns_unknown":
        message = _REASONS.get(str(params["reason"]), MESSAGES[code])
    elif code == "dmarc_missing_p" and not raw_params.get("has_rua", True):
        message = _MISSING_P_WITHOUT_RUA
    elif code in MESSAGES:
        message = MESSAGES[code]
    else:
        return str(_GENERIC) % {"code": code}
    return str(message) % params


def status_help(status: str) -> str:
    """What a record status means, in the active language."""
    return str(STATUS_HELP.get(status, ""))
