"""Reference data compliance rules share: the extract step and the offline classifier read the
same table, so they cannot disagree about what an occupation typically earns."""

from __future__ import annotations

# An income above this multiple of an occupation's typical ceiling is inconsistent with it.
INCOME_TOLERANCE = 3
# Typical ceiling of annual income per occupation keyword (any currency unit the caller uses
# consistently). Unknown occupations draw no inference.
TYPICAL_INCOME_CEILING = {
    "student": 30_000, "intern": 30_000, "unemployed": 20_000, "retired": 80_000,
    "cashier": 45_000, "waiter": 40_000, "waitress": 40_000, "driver": 70_000, "clerk": 60_000,
    "teacher": 90_000, "nurse": 110_000, "engineer": 250_000, "developer": 250_000,
    "accountant": 200_000, "doctor": 500_000, "physician": 500_000, "surgeon": 700_000,
    "lawyer": 500_000, "executive": 2_000_000, "director": 1_500_000, "entrepreneur": 5_000_000,
    "business owner": 5_000_000,
}


def income_consistency(occupation: str | None, income: float | None) -> str:
    """'consistent', 'inconsistent', or 'unknown' when the occupation or income is not known."""
    occupation = (occupation or "").strip().lower()
    ceiling = next((v for k, v in TYPICAL_INCOME_CEILING.items() if k in occupation), None)
    if ceiling is None or income is None:
        return "unknown"
    return "inconsistent" if income > ceiling * INCOME_TOLERANCE else "consistent"

# Answers that amount to "not disclosed", and sources that are legitimate but hard to verify.
UNDISCLOSED_FUNDS = {"", "undisclosed", "unknown", "not disclosed", "prefer not to say", "n/a", "none"}
HARD_TO_VERIFY_FUNDS = ("gift", "inheritance", "crypto", "gambling", "lottery", "loan from friend")
