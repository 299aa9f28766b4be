"""Where the guards lived until issue 11: now `payments/database/guards_v2.py` (kept importable)."""
from payments.database.guards_v2 import *  # noqa: F401,F403
from payments.database.guards_v2 import PURGE_ALLOWED, TRIGGERS  # noqa: F401
