"""Secrets: the values no log line, error body or settings repr may show, and `redact`,
which takes them out of a text.

Two nets catch them. Patterns catch secrets the process was never told about: the
password of any URL (`scheme://user:***@host`), `password=...`-style pairs (libpq and
Redis connection strings, query strings, `AWS_SECRET_ACCESS_KEY=...`), bearer tokens and
the service's own `mls_` tokens. Known values catch the rest wherever they appear: every
`SecretStr` and URL password of the settings this process loaded (`load_settings`) or
received from another process (a section unpickled in an actor or replica), and the
values of secret-named environment variables (`AWS_SECRET_ACCESS_KEY`, `PGPASSWORD`,
`MLFLOW_TRACKING_TOKEN`, the password in `ML_FEAST_REGISTRY_URL`, ...).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from urllib.parse import quote, unquote

from pydantic import AnyUrl, BaseModel, SecretStr

from app.core.access import TOKEN_PREFIX

MASK = "***"
"""What a secret is replaced with."""

MIN_KNOWN_LENGTH = 8
"""Known values shorter than this are masked by the patterns only: replacing a short
word everywhere would garble every log line that happens to contain it."""

_SECRET_WORD = r"(?:password|passwd|secret|token|secret[_-]?key|access[_-]?key|api[_-]?key)"

# The user part stops at the first ':'; the password runs to the last '@' of the token
# (SQLAlchemy accepts unescaped '/' and ':' in it), never across quotes or whitespace.
# A scheme is at most 32 characters, and the pairs match from the secret word on (what
# precedes it is kept as is): a long run of word characters (a base64 blob in a log
# line) then costs linear time, not quadratic.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/@\"'<>]*):(?P<secret>[^\s\"'<>]*)@"
)
# password=..., AWS_SECRET_ACCESS_KEY=..., ?access_token=... (not max_tokens=..., nor
# token == ... in a traceback's source line)
_ASSIGNED = re.compile(
    rf"(?i)(?P<head>{_SECRET_WORD}\s*=\s*)(?P<secret>[^\s,;&\"'<>)=][^\s,;&\"'<>)]*)"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_URL_PASSWORD, rf"\g<head>:{MASK}@"),
    # password='...' in reprs, "token": "..." in JSON
    (
        re.compile(
            rf"(?i)(?P<head>{_SECRET_WORD}(?:\s*=\s*|[\"']\s*:\s*))"
            r"(?P<q>[\"'])(?:(?!(?P=q)).)+(?P=q)"
        ),
        rf"\g<head>\g<q>{MASK}\g<q>",
    ),
    (_ASSIGNED, rf"\g<head>{MASK}"),
    (
        re.compile(r"(?i)(?P<head>\b(?:bearer|basic)\s+)(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)"),
        rf"\g<head>{MASK}",
    ),
    (re.compile(rf"\b{TOKEN_PREFIX}[A-Za-z0-9_-]{{16,}}"), f"{TOKEN_PREFIX}{MASK}"),
)
_SECRET_NAME = re.compile(rf"(?i){_SECRET_WORD}")
_NOT_A_SECRET_NAME = ("_FILE", "_PATH", "_DIR")

_lock = threading.Lock()
_known: tuple[str, ...] = ()  # longest first, so that no shorter secret splits a longer one


def redact(text: str) -> str:
    """`text` without the secrets it may hold: URL passwords, secret-named assignments,
    tokens and every known secret value replaced by `***`.

    Idempotent, and cheap on text without secrets: it runs on every log record and every
    error body.
    """
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    return text


def remember_secrets(*values: str | SecretStr | None) -> None:
    """Mask these values from now on, wherever `redact` finds them (with their
    URL-encoded forms: a password in a URL is percent-encoded)."""
    found = set()
    for value in values:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not text or len(text) < MIN_KNOWN_LENGTH or text == MASK:
            continue
        found.update({text, quote(text, safe=""), quote(text, safe="/:")})
    _add(found)


def remember_settings(settings: BaseModel) -> None:
    """Mask the secrets these settings hold: every `SecretStr`, every URL password."""
    remember_secrets(*_secrets_in(settings))


def remember_environment(environ: Mapping[str, str] | None = None) -> None:
    """Mask the secrets of the environment: values of secret-named variables
    (`AWS_SECRET_ACCESS_KEY`, `PGPASSWORD`, `*_TOKEN`; not `*_FILE`, `*_PATH`, `*_DIR`),
    and the passwords inside any variable's value (`ML_FEAST_REGISTRY_URL`,
    `ML_FEAST_REDIS=host:6379,password=...`)."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for name, value in environ.items():
        if _SECRET_NAME.search(name) and not name.upper().endswith(_NOT_A_SECRET_NAME):
            values.append(value)
        values.extend(secrets_inside(value))
    remember_secrets(*values)


def secrets_inside(text: str) -> list[str]:
    """The secrets the patterns find in `text` (URL passwords, `password=...` values),
    decoded as well as found."""
    found: list[str] = []
    for pattern in (_URL_PASSWORD, _ASSIGNED):
        for match in pattern.finditer(text):
            secret = match.group("secret")
            if secret and secret != MASK:
                found.extend({secret, unquote(secret)})
    return found


def url_password(url: str) -> str | None:
    """The password of a URL (`scheme://user:password@host/...`), decoded; None without."""
    match = _URL_PASSWORD.match(url)
    return unquote(match.group("secret")) if match and match.group("secret") else None


def with_password(url: str, password: str) -> str:
    """`url` with `password` (percent-encoded) after its user name.

    Raises:
        ValueError: the URL has no user name, or has a password already.
    """
    scheme, separator, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    user, at, host = rest[:end].rpartition("@")
    if not separator or not at or not user:
        raise ValueError(
            "a password needs a URL with a user name to go with, such as "
            "postgresql://user@host:5432/db"
        )
    if ":" in user:
        raise ValueError("the URL has a password already: give the password in one place")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}{rest[end:]}"


def _secrets_in(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name, None))
    elif isinstance(value, str | AnyUrl):
        password = url_password(str(value))
        if password:
            yield password
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secrets_in(item)
    elif isinstance(value, tuple | list | set | frozenset):
        for item in value:
            yield from _secrets_in(item)


def _add(values: set[str]) -> None:
    global _known
    if not values or values.issubset(_known):
        return
    with _lock:
        _known = tuple(sorted(values.union(_known), key=len, reverse=True))
