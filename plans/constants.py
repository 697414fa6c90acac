"""Numbers of the plan catalogue and the credit rules (PRODUCT.md, "Plans and credits")."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

TERM_MONTHS = 12
CUSTOM_PLAN_MIN_EMAILS = 30_000_000  # custom plans only above this many e-mails per year
PRICE_UNIT = 1000  # overage is priced per 1,000 e-mails
CENT = Decimal("0.01")
POOL_WARNING_LEVELS = (80, 100)  # owners are e-mailed when the pool reaches these percentages
# STARTER: the daily job grants the next term this long before the running one ends (no gap) ...
STARTER_RENEW_AHEAD = timedelta(days=3)
# ... and, if the job did not run in time, a term that ended less than this ago is still followed seamlessly.
STARTER_RENEW_GRACE = timedelta(days=2)

# The default catalogue (seed data the XES team edits in the admin).
DEFAULT_CATALOGUE = [
    # code, name, e-mails per year, price per 1,000 extra, eligibility, free first year, renewable, orderable
    ("BASIC", "Basic", 200_000, Decimal("10.00"), "new_cross_media", True, False, True),
    ("STARTER", "Starter", 500_000, Decimal("8.00"), "cloud_emedia", False, True, False),
    ("STANDARD", "Standard", 1_000_000, Decimal("6.00"), "any", False, True, True),
    ("PROFESSIONAL", "Professional", 5_000_000, Decimal("4.00"), "any", False, True, True),
    ("PREMIUM", "Premium", 12_000_000, Decimal("3.00"), "any", False, True, True),
    ("ENTERPRISE", "Enterprise", 30_000_000, Decimal("2.20"), "any", False, True, True),
]
