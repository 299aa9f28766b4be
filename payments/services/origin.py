"""Where a change of money comes from, for its audit row's `extra["origin"]` (no model imports: the
backfill, which migrations run with historical models, uses it too).

In a request (API or admin): `requestId` (`config.request_context`) and, through the API,
`apiTokenKey`, the non-secret key knox finds the caller's token by (set on the user by
`config.api.ExpiringTokenAuthentication`). Outside a request (a management command): `osUser`, the
operating-system user running it.
"""
import getpass
from functools import cache

from config.api import TOKEN_KEY_ATTRIBUTE
from config.request_context import current_request_id


@cache
def os_user() -> str:
    """Who runs this process, as the operating system knows it ("" if it cannot tell)."""
    try:
        return getpass.getuser()[:150]
    except (KeyError, OSError):
        return ""


def audit_origin(actor=None) -> dict:
    """Where an audit row written now, by `actor`, comes from."""
    request_id = current_request_id()
    if request_id is None:
        return {"osUser": os_user()}
    origin = {"requestId": request_id}
    token_key = getattr(actor, TOKEN_KEY_ATTRIBUTE, None)
    if token_key is not None:
        origin["apiTokenKey"] = token_key
    return origin
