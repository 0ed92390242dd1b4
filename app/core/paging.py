"""Opaque page tokens, bound to the query they continue.

A token wraps the backend's own continuation token with a fingerprint of the query
(filter, ordering, page owner). Reusing a token with a different query is refused
instead of silently returning a page of some other listing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable

from app.errors import ErrorCode, InvalidInput

_VERSION = 1


def query_fingerprint(parts: Iterable[object]) -> str:
    """A short stable digest of the parts that define a listing."""
    text = json.dumps([str(part) for part in parts], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def seal(inner: str | None, fingerprint: str) -> str | None:
    """Wrap the backend token `inner` for the listing `fingerprint` (None stays None)."""
    if not inner:
        return None
    raw = json.dumps({"v": _VERSION, "q": fingerprint, "t": inner}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def unseal(token: str | None, fingerprint: str) -> str | None:
    """The backend token inside `token`, checked against the listing `fingerprint`.

    Raises:
        InvalidInput: the token is malformed or belongs to a different query.
    """
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        valid = isinstance(data, dict) and data.get("v") == _VERSION
        inner, query = (data["t"], data["q"]) if valid else (None, None)
    except (ValueError, UnicodeError, binascii.Error, KeyError, TypeError):
        inner, query = None, None
    if not isinstance(inner, str) or query is None:
        raise _bad_token("is not a page token issued by this service")
    if query != fingerprint:
        raise _bad_token("was issued for a different query; repeat the query that produced it")
    return inner


def _bad_token(reason: str) -> InvalidInput:
    return InvalidInput.for_field(
        "page_token", reason, location="query", code=ErrorCode.INVALID_PAGE_TOKEN
    )


def unseal_offset(token: str | None, fingerprint: str) -> int:
    """The row offset inside `token` (0 without one), for listings paged by offset.

    Raises:
        InvalidInput: the token is malformed, belongs to a different query or holds no
            offset.
    """
    inner = unseal(token, fingerprint) or "0"
    if not inner.isdigit():  # sealed by us as a non-negative offset
        raise _bad_token("is not a page token of this listing")
    return int(inner)
