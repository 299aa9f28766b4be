"""Where the read model's upkeep lived until issue 11: now `payments/database/figures_v1.py`.
`0004_invoice_figures` (landed) imports its install and removal from here."""
from payments.database.figures_v1 import *  # noqa: F401,F403
from payments.database.figures_v1 import BUCKET_BITS, LOCK_NAMESPACE, figures_install, figures_remove  # noqa: F401
