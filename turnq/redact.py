"""The one redaction of secrets in a store location, for everything turnq prints or stores.

A location may carry a password in the URL's userinfo (`postgresql://u:pw@host/db`), in a
query option (`?password=pw`, any case, the key or value percent-encoded), or in libpq's
`key=value` form (`host=h password=pw`). Every message, `diff`, `doctor`, `migrate` output
and the audit log's `source` of a migrate entry goes through `redact_location` (issue 15).
It works on text, not on a parsed URL: a malformed URL (`postgresql://u:pw@[::1:5432/db`)
must be redacted too, before its error message is written.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

#: Option names whose value is a secret (libpq's), compared case-insensitively once decoded.
SECRET_KEYS = frozenset({"password", "sslpassword"})

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>.*)$", re.S)
_OPTION = re.compile(r"(?P<key>[^=&;?/\s]+)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|[^&;#\s]*)")


def redact_location(text: str) -> str:
    """`text` with every password replaced by `***`; anything else as it was."""
    match = _URL.match(text)
    if match is None:  # a path, or libpq's `key=value …` form
        return _redact_options(text)
    rest = match.group("rest")
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    return match.group("scheme") + netloc + _redact_options(tail)


def _redact_options(text: str) -> str:
    def mask(option: re.Match[str]) -> str:
        if unquote(option.group("key")).strip().lower() not in SECRET_KEYS:
            return option.group()
        return option.group("key") + option.group("eq") + MASK

    return _OPTION.sub(mask, text)
