"""Receivables aging: the bucket of an invoice's outstanding money by days past due. SQL twin:
`payments.database.rules.aging_bucket_sql` (tests hold them equal)."""
from datetime import date, timedelta

AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
NO_DUE = date(9999, 12, 31)  # the read model's key for "no due date" (`payments.database.rules.NO_DUE_DAY`)


def aging_bucket(due_date: date | None, today: date) -> str:
    if due_date is None or due_date == NO_DUE or due_date >= today:
        return "current"
    for bucket, days in (("1-30", 30), ("31-60", 60), ("61-90", 90)):
        if due_date >= today - timedelta(days=days):
            return bucket
    return "90+"
