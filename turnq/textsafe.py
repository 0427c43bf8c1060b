"""Showing data to people literally: control characters made visible.

Queued texts, session ids, source keys, owners, reasons and file names come from
users and agents. Sent to a terminal as they are, an ESC or BEL in them would clear,
recolour or spoof the screen; a newline would forge a second line of a one-line
error. `escape_control` turns every C0 and C1 control character and DEL into a
visible escape (`\\x1b`, `\\n`) that a person can read back.

Pure and free of Rich, so the core and the plain-text stderr lines use it too; the
Rich side (`turnq.render.lit`) builds literal `Text` from its result.
"""

from __future__ import annotations

import re

#: C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_NO_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def escape_control(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as an escape: `\\n`, `\\t`, `\\r`, else `\\xHH`.

    `keep_newlines`: leave line feeds as they are, for multi-line blocks (a queued text
    shown in full); one-line places (table cells, errors, titles) show them as `\\n`.
    Backslashes are left alone: the result is for reading, not for parsing back."""
    pattern = _CONTROL_NO_NEWLINE if keep_newlines else _CONTROL
    if pattern.search(text) is None:  # the common case: nothing to copy
        return text
    return pattern.sub(_visible, text)


def has_control(text: str) -> bool:
    """Whether `escape_control` would change `text` (newlines included)."""
    return _CONTROL.search(text) is not None
