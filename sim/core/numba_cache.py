"""Where numba caches liqsim's compiled code: one directory per version of its sources.

numba keeps compiled functions on disk (``cache=True``) and reuses them while the function's
own source file is unchanged. Its documentation lists the limits of that check ("Notes on
Caching", *Cache limitations*): a change to a function or a global defined in another file is
not seen, and globals are frozen at compile time. The phase kernels (:mod:`sim.world.kernels`)
call helpers of :mod:`sim.core.jit` and :mod:`sim.core.numerics` and read constants of other
modules, so editing, say, :func:`sim.core.jit.psum` would leave the kernels running the old
machine code from the cache, silently.

:func:`prepare` therefore points numba's cache (``NUMBA_CACHE_DIR``) at
``<root>/src-<hash>``, where the hash covers every source file compiled code may come from
(``sim/core``, ``sim/world/kernels``, ``agents``); a changed source gets a fresh directory and
a full compile. ``<root>`` is the user's ``NUMBA_CACHE_DIR`` if set, else ``.numba_cache`` in
the checkout (beside ``sim/``) when it is writable, else ``$XDG_CACHE_HOME/liqsim-numba``
(``~/.cache``). It must run before numba is first imported (numba reads its configuration at
import): the two places that import numba call it first. Child processes inherit the
variable, and a directory already named for the current hash is kept as it is.

Old versions are pruned (:func:`prune`, called by :func:`prepare` in the process that chooses
the directory, not in its children): each directory is about 11 MB, one per version of the
sources, so a checkout being edited gathers dozens. :func:`prepare` marks its directory used
(its modification time, set to now), and deletes the ``src-<hash>`` siblings not used for
:data:`KEEP_DAYS` days, except the :data:`KEEP_LATEST` most recently used, at most
:data:`MAX_PRUNED` a process. A deleted directory costs only a compile (about 40 s of CPU
for all the kernels) and is no error for a process still using it: numba reads a missing
index or data file as a cache miss, and makes the directory again before it saves
(``numba.core.caching``: ``IndexDataCacheFile.load``, ``Cache._save_overload``). A directory is
renamed (atomically) before it is deleted, so two processes never delete the same one and a
process starting meanwhile makes a new, empty one rather than loading from a half-deleted
tree. Nothing about pruning ever fails or stops a process: every error is ignored (another
process's files, permissions, a read-only root), and the rest is left for a later process.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[2]  # the directory holding sim/ and agents/
SOURCES = ("sim/core", "sim/world/kernels", "agents")
_prepared = False
# a version directory is kept while used in the last KEEP_DAYS days: a long weekend away from a
# checkout, or a sweep of up to three days on one version, keeps its compiled kernels; older
# ones only cost disk (about 11 MB each), and a deleted one only a compile (about 40 s of CPU)
KEEP_DAYS = 3.0
KEEP_LATEST = 3  # and the most recently used ones, however old: the other branch or checkout
MAX_PRUNED = 4  # deleted by one process at most (~25 ms each), the rest left to later ones
_VERSION = re.compile(r"src-[0-9a-f]{16}")  # the directories prepare() names, and only those
_DOOMED = re.compile(r"src-[0-9a-f]{16}\.deleting-[0-9a-f]{16}")  # renamed by prune()


def source_hash() -> str:
    """A short hash of every ``.py`` file compiled code may come from (path and bytes)."""
    h = hashlib.sha256()
    for folder in SOURCES:
        for path in sorted((_PACKAGE / folder).rglob("*.py")):
            h.update(path.relative_to(_PACKAGE).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK)


def prepare() -> str | None:
    """Set ``NUMBA_CACHE_DIR`` for this process and its children (once; nothing if numba is
    already imported, since it would not read it). Returns the directory, or None."""
    global _prepared
    if _prepared or "numba" in sys.modules:
        return os.environ.get("NUMBA_CACHE_DIR")
    _prepared = True
    name = f"src-{source_hash()}"
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and Path(given).name == name:
        return given  # set by this function in a parent process
    if given:
        root = Path(given)
    elif _writable(_PACKAGE / ".numba_cache"):
        root = _PACKAGE / ".numba_cache"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = Path(base) / "liqsim-numba"
    target = root / name
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    mark_used(target)
    try:
        prune(root, target)
    except Exception:  # noqa: BLE001 - pruning must never fail a run (it ignores OSError itself)
        pass
    return str(target)


def mark_used(d: Path) -> None:
    """Make ``d`` if it is missing and set its modification time to now (its last use, as
    :func:`prune` reads it; numba writes into subdirectories, which leaves it unchanged).
    Errors are ignored."""
    try:
        d.mkdir(parents=True, exist_ok=True)
        os.utime(d)
    except OSError:
        pass


def prune(root: Path, keep: Path, now: float | None = None) -> list[str]:
    """Delete the version directories (``src-<hash>``) in ``root`` other than ``keep`` that
    were last used (modified) more than :data:`KEEP_DAYS` days before ``now`` and are not
    among the :data:`KEEP_LATEST` most recently used (``keep`` counted), oldest first, at most
    :data:`MAX_PRUNED`; and the leftovers of an interrupted prune. Each is renamed to
    ``<name>.deleting-<random>`` (atomic: a directory another process renamed or deleted
    first is skipped) and then deleted. Never raises; returns the names deleted."""
    now = time.time() if now is None else now
    found = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for e in entries:
        try:
            if not e.is_dir(follow_symlinks=False):
                continue
            if _DOOMED.fullmatch(e.name):
                shutil.rmtree(e.path, ignore_errors=True)  # a prune stopped half-way
            elif _VERSION.fullmatch(e.name) and e.name != keep.name:
                found.append((e.stat(follow_symlinks=False).st_mtime, e.name))
        except OSError:
            continue  # deleted meanwhile, or not ours to read
    found.sort(reverse=True)  # the most recently used first
    old = [n for t, n in found[max(KEEP_LATEST - 1, 0):] if now - t > KEEP_DAYS * 86400.0]
    deleted = []
    for name in reversed(old[-MAX_PRUNED:] if MAX_PRUNED else []):  # the oldest first
        doomed = root / f"{name}.deleting-{uuid.uuid4().hex[:16]}"
        try:
            os.rename(root / name, doomed)
        except OSError:
            continue  # gone already (another process pruned it), or not ours
        shutil.rmtree(doomed, ignore_errors=True)
        deleted.append(name)
    return deleted
