"""Single files written all or nothing: under a temporary name in the same directory, then
renamed into place (``os.replace`` is atomic on POSIX), with ordinary permissions. Standard
library only, so figures, reports and ledgers can write files without loading the model
(:mod:`sim.io.store` writes whole run directories on top of it)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: str | os.PathLike) -> None:
    """Give the temporary file ordinary permissions, then rename it into place."""
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename it into place.

    Works on strings (``os.path``), so a caller writing a file per sweep run can pass a str
    and build no ``Path``: pathlib interns every part it parses, and Python 3.12 keeps
    interned strings for the life of the process.
    """
    path = os.fspath(path)
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_with(path: Path, writer) -> None:
    """Call ``writer(tmp_path)`` then rename the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
