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
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[2]  # the directory holding sim/ and agents/
SOURCES = ("sim/core", "sim/world/kernels", "agents")
_prepared = False


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
    return str(target)
