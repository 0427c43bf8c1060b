"""Writing files safely: atomic replacement, and sidecar files that never follow a link.

Every file turnq creates is made with mode 0o666 and the process's umask applies, as for
any program (`touch`, a shell redirect); a file that is replaced keeps its mode. A file
beside a store (its audit log, lock, backups) is opened with `O_NOFOLLOW`, and a new one
with `O_EXCL` too: a symbolic link planted at such a name is refused, never written through
(it could point at any file the user can write).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import StoreUnwritable

#: A new file's mode before the umask, as open(2) callers use it.
NEW_FILE_MODE = 0o666
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


class SymlinkRefused(StoreUnwritable):
    """A sidecar file (log, lock, backup) is a symbolic link: refused, nothing written (exit 9)."""


def symlink_refused(path: str | Path, what: str) -> SymlinkRefused:
    return SymlinkRefused(f"refusing to use the {what} {path}: it is a symbolic link, and turnq never writes "
                          "through a link beside a store; remove it (nothing was changed)")


def check_not_symlink(path: str | Path, what: str) -> None:
    """Refuse a sidecar name that is a symbolic link (dangling or not)."""
    if os.path.islink(path):
        raise symlink_refused(path, what)


def open_sidecar(path: str | Path, flags: int, what: str, mode: int = NEW_FILE_MODE) -> int:
    """`os.open` of a sidecar with O_NOFOLLOW: a link at `path` is SymlinkRefused (other
    failures are the OSError, for the caller to word)."""
    try:
        return os.open(path, flags | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.EEXIST and os.path.islink(path)):
            raise symlink_refused(path, what) from None
        raise


def create_temp(folder: Path, prefix: str, mode: int = NEW_FILE_MODE) -> tuple[int, str]:
    """A new temp file `folder/PREFIX<8 chars>.tmp` (O_EXCL, O_NOFOLLOW): (fd, path). The
    umask applies to `mode`, unlike tempfile.mkstemp's fixed 0600."""
    for _ in range(100):
        name = str(folder / f"{prefix}{''.join(secrets.choice(_TEMP_CHARS) for _ in range(8))}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def existing_mode(path: Path) -> int | None:
    """The permission bits of the file at `path` (None: there is none)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None


def write_atomically(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace (or create) `path` with `data`: a temp file beside it, fsync, rename, fsync of
    the folder. `mode`: the new file's permission bits (None: keep the old file's, or the
    umask's default for a new one). Raises OSError; `path` is then as it was."""
    folder = path.parent
    if mode is None:
        mode = existing_mode(path)
    fd, temp_name = create_temp(folder, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        remove_quietly(temp_name)
        raise
    # The rename has committed the file; syncing the folder only hardens it against power loss
    # (some file systems refuse fsync on a directory): its failure is not the write's.
    try:
        fsync_dir(folder)
    except OSError:
        pass


def write_new(path: Path, data: bytes, what: str, *, mode: int = NEW_FILE_MODE) -> None:
    """Create `path` (it must not exist, not even as a link) holding `data`, fsynced."""
    fd = open_sidecar(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        remove_quietly(str(path))
        raise


def write_backup(stem: Path, extension: str, data: bytes, store_path: Path, location: str) -> str:
    """A backup of store `location` (at `store_path`) holding `data`, at the first free name
    `STEM[-N]EXTENSION`, as private as the store. StoreUnwritable when it cannot be written."""
    path = free_name(stem, extension)
    try:
        write_new(path, data, "backup", mode=existing_mode(store_path) or NEW_FILE_MODE)
    except OSError as err:
        raise StoreUnwritable(f"cannot back up store {location} to {path}: {err.strerror or err}; "
                              "nothing was changed") from None
    return str(path)


#: How a file that is a store begins: SQLite's header; turnq's JSON document names its format.
_SQLITE_HEADER = b"SQLite format 3\x00"
_STORE_FORMAT = re.compile(rb'"format"\s*:\s*"turnq-store"')


def is_store_file(path: Path) -> bool:
    """Whether `path` is a regular file holding a store: a SQLite database, or a JSON document
    of format `turnq-store` (read from its first 4 KB only)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(_SQLITE_HEADER) or _STORE_FORMAT.search(head) is not None


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def free_name(stem: Path, extension: str = "") -> Path:
    """`STEM.EXT`, or `STEM-1.EXT`, `STEM-2.EXT`, … : the first name nothing (not even a
    link) holds, so an earlier backup is never overwritten (a fixed clock repeats names)."""
    found, number = stem.with_name(stem.name + extension), 1
    while os.path.lexists(found):
        found = stem.with_name(f"{stem.name}-{number}{extension}")
        number += 1
    return found


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
