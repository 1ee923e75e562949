"""liqsim's version, named from the git state by setuptools-scm (``sim.__version__``).

Every manifest and provenance record stores it as ``liqsim_version`` so that a result names the
code that made it: ``0.1.dev349+g1a2b3c4`` is 349 commits after the last tag at commit
``1a2b3c4``; a ``.d20261204`` suffix means the working tree had uncommitted changes.

Where the version comes from, first that answers:

1. a git checkout (the editable install ``pip install -e .``, or the source tree on
   ``sys.path``) with setuptools-scm importable (the ``test`` extra installs it): the state of
   the working tree *now*, so commits made after the install are named;
2. the installed package's metadata (what setuptools-scm computed when it was built/installed);
3. :data:`UNKNOWN` (``0+unknown``): a copy of the source without ``.git`` that was never
   installed (an installed tarball without ``.git`` also reports it, setuptools-scm's
   ``fallback_version`` in ``pyproject.toml``).

This module imports nothing of liqsim's, so reading the version never loads the model.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

UNKNOWN = "0+unknown"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout's top (holds .git) if any


def _from_git(root: Path) -> str | None:
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None  # .git is a directory in a clone, a file in a git worktree
    try:
        from setuptools_scm import get_version  # lazy: only for a checkout, once per process
    except ImportError:
        return None
    try:
        return get_version(root=str(root), fallback_version=UNKNOWN)
    except Exception:  # noqa: BLE001 - no git binary, a broken repository: use the metadata
        return None


def _from_metadata() -> str | None:
    try:
        return version("liqsim")
    except PackageNotFoundError:
        return None


@cache  # git or the metadata is read once per process
def liqsim_version() -> str:
    """The liqsim version of this process's code (module docstring: where it comes from)."""
    return _from_git(SOURCE_ROOT) or _from_metadata() or UNKNOWN
