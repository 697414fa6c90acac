"""Live DNS checks of the records a domain must publish.

``resolver`` builds the configured dnspython resolver, ``core`` holds the lookups and the result
types, ``spf`` and ``dmarc`` analyse those two record families in depth, ``checks`` turns one
expected :class:`~deliverability.models.DnsRecord` into a :class:`~deliverability.dns.core.Verdict`,
and ``messages`` puts the machine-readable problems into plain words in the reader's language.
"""
