"""Bounds on what turnq reads: nesting depth, kinds of file, file and image sizes.

Hostile input must give a one-line error at once, not a RecursionError, a hang on a
FIFO, or memory exhaustion on `/dev/zero` (issue 15). Each limit is documented in the
README's "Guarantees"; the size limits can be raised with environment variables.
No printing, no exiting: callers get `InvalidInput` (exit 2) or the error class they pass.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from .errors import InvalidInput, TurnqError

#: serde_json's recursion limit, which the reference applies to every JSON document it reads.
MAX_DEPTH = 128

#: Files read as input (--payload/--draft/--claim @FILE, fixtures for import): 64 MiB.
DEFAULT_MAX_INPUT_BYTES = 64 * 1024 * 1024
#: One image (--image, a fixture's image): 4 MiB. The wire writes bytes as an array of
#: integers, so a stored image takes about 4 times its size, and every read of the store
#: parses it again.
DEFAULT_MAX_IMAGE_BYTES = 4 * 1024 * 1024

INPUT_BYTES_ENV = "TURNQ_MAX_INPUT_BYTES"
IMAGE_BYTES_ENV = "TURNQ_MAX_IMAGE_BYTES"


def _env_bytes(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19:
        raise InvalidInput(f"{name}: expected a whole number of bytes, got {text[:40]!r}")
    return int(text)


def max_input_bytes() -> int:
    return _env_bytes(INPUT_BYTES_ENV, DEFAULT_MAX_INPUT_BYTES)


def max_image_bytes() -> int:
    return _env_bytes(IMAGE_BYTES_ENV, DEFAULT_MAX_IMAGE_BYTES)


# --------------------------------------------------------------------------- files


def read_regular_file(path: Any, what: str, *, limit: int | None, env: str | None = None,
                      error: type[TurnqError] = InvalidInput) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (None: no limit). `what` begins
    each message: `--payload: ` or `store ` (the path follows).

    Opened non-blocking, so that a FIFO cannot hang the open; anything but a regular file
    (a FIFO, `/dev/zero`, a directory) is refused before a byte is read. `FileNotFoundError`
    is left to the caller (a missing store is an empty one); other OS errors raise `error`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise error(f"{what}{path} is a directory, not a file") from None
    except OSError as err:
        raise error(f"{what}{path} cannot be read: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what}{path} is not a regular file ({file_kind(info.st_mode)})")
        if limit is not None and info.st_size > limit:
            raise error(f"{what}{path} is {info.st_size} bytes, more than the limit of {limit}"
                        + (f" (raise it with {env})" if env else ""))
        with os.fdopen(fd, "rb", closefd=False) as handle:  # one read, sized by fstat
            data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:  # it grew after fstat
            raise error(f"{what}{path} grew past the limit of {limit} bytes while it was read")
        return data
    except OSError as err:
        raise error(f"{what}{path} cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


# --------------------------------------------------------------------------- nesting

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_AS_PARENS = str.maketrans("[{]}", "(())")


def too_deep(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """True when JSON text nests arrays/objects deeper than `limit`.

    Cheap for ordinary documents: fewer than `limit` opening brackets cannot nest deeper,
    which two C-speed counts tell. Otherwise strings are cut out and innermost `[]`/`{}`
    pairs removed level by level (each pass a C-speed replace over the brackets alone).
    Unbalanced text is left for the parser to word its error."""
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        text = text.decode("latin-1")  # every byte maps to one char; brackets and quotes stay ASCII
    elif not isinstance(text, str) or text.count("[") + text.count("{") <= limit:
        return False  # not text: the parser words its own error
    return _bracket_depth_over(_JSON_STRING.sub("", text), limit)


def _bracket_depth_over(text: str, limit: int) -> bool:
    parens = _NOT_BRACKET.sub("", text).translate(_AS_PARENS)
    for _ in range(limit):
        if not parens:
            return False
        shorter = parens.replace("()", "")
        if len(shorter) == len(parens):
            return False
        parens = shorter
    return "()" in parens


def nesting_error(limit: int = MAX_DEPTH) -> str:
    return f"nested deeper than {limit} levels (the limit turnq shares with serde_json)"


def loads_json(text: str | bytes) -> Any:
    """`json.loads` for a store's row or log line: `ValueError` (not RecursionError) when it
    nests deeper than MAX_DEPTH."""
    if too_deep(text):
        raise ValueError(nesting_error())
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(nesting_error()) from None


# --------------------------------------------------------------------------- TOML

_TOML_SKIP = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\n]*\'|#[^\n]*')
_DOTTED = re.compile(r"[A-Za-z0-9_+:-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_+:-]+)+")
#: Dotted-key parts in a whole TOML document: tomllib's cost grows with the square of a key's
#: parts (a 40 KB key of 20,000 parts takes 1.6 GB), so their number is bounded before parsing.
MAX_TOML_KEY_PARTS = 100_000


def check_toml(text: str, name: str) -> None:
    """Refuse TOML text whose dotted keys or brackets nest deeper than MAX_DEPTH, or that holds
    more than MAX_TOML_KEY_PARTS dotted-key parts, before tomllib parses it.

    A conservative scan: strings and comments are cut out (a string counts as one key part)
    and every dotted run counts, values such as `1.5` too."""
    bare = _TOML_SKIP.sub(lambda m: "" if m.group().startswith("#") else "s", text)
    total = 0
    for match in _DOTTED.finditer(bare):
        parts = match.group().count(".") + 1
        if parts > MAX_DEPTH:
            raise InvalidInput(f"{name}: a dotted key of {parts} parts is {nesting_error()}")
        total += parts
        if total > MAX_TOML_KEY_PARTS:
            raise InvalidInput(f"{name}: more than {MAX_TOML_KEY_PARTS} dotted-key parts (the limit)")
    if bare.count("[") + bare.count("{") > MAX_DEPTH and _bracket_depth_over(bare, MAX_DEPTH):
        raise InvalidInput(f"{name}: {nesting_error()}")
