"""sim.core.numba_cache: numba's cache in a directory per version of the compiled sources."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.core import numba_cache

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """prepare() as in a new process: not yet run, numba not imported, no variable set."""
    monkeypatch.setattr(numba_cache, "_prepared", False)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    return tmp_path


def _tree(d: Path, text: str) -> Path:
    for folder in numba_cache.SOURCES:
        (d / folder).mkdir(parents=True, exist_ok=True)
    (d / "sim" / "core" / "jit.py").write_text(text)
    return d


def test_the_hash_follows_every_source(monkeypatch, tmp_path):
    """An edit to a helper in another file than the kernel (here sim/core/jit.py, which numba
    alone would not notice) gives another cache directory; the same sources the same one."""
    a = _tree(tmp_path / "a", "def psum(a): return 0.0\n")
    b = _tree(tmp_path / "b", "def psum(a): return 0.0 + 0.0\n")
    c = _tree(tmp_path / "c", "def psum(a): return 0.0\n")
    hashes = {}
    for name, d in (("a", a), ("b", b), ("c", c)):
        monkeypatch.setattr(numba_cache, "_PACKAGE", d)
        hashes[name] = numba_cache.source_hash()
    assert hashes["a"] != hashes["b"] and hashes["a"] == hashes["c"]
    assert len(hashes["a"]) == 16


def test_prepare_sets_the_directory_once(fresh, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(fresh / "mine"))
    got = numba_cache.prepare()
    want = fresh / "mine" / f"src-{numba_cache.source_hash()}"
    assert got == str(want) == os.environ["NUMBA_CACHE_DIR"]
    assert numba_cache.prepare() == str(want)  # once: a second call changes nothing


def test_a_child_keeps_the_directory_its_parent_chose(fresh, monkeypatch):
    chosen = fresh / "x" / f"src-{numba_cache.source_hash()}"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(chosen))
    assert numba_cache.prepare() == str(chosen)


def test_nothing_changes_once_numba_is_imported(fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", object())
    assert numba_cache.prepare() is None and "NUMBA_CACHE_DIR" not in os.environ


@pytest.mark.slow  # compiles every kernel into an empty cache: about 40 s
def test_a_run_caches_its_kernels_in_the_hashed_directory(tmp_path):
    """In a fresh process with NUMBA_CACHE_DIR=<tmp>: one month on the compiled engine leaves
    cache files under <tmp>/src-<hash>/ and nowhere else in <tmp>."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    code = ("import os; from sim.world.model import LiquidationModel; "
            "LiquidationModel('baseline', months=1).run(); print(os.environ['NUMBA_CACHE_DIR'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=900, check=True)
    used = Path(out.stdout.strip().splitlines()[-1])
    assert used.parent == tmp_path and used.name == f"src-{numba_cache.source_hash()}"
    assert list(used.rglob("*.nbi"))
    assert [p.name for p in tmp_path.iterdir()] == [used.name]


@pytest.mark.parametrize("folder", ["sim/core", "sim/core/sub", "sim/world/kernels", "agents"])
def test_a_new_file_in_any_compiled_source_folder_changes_the_hash(monkeypatch, tmp_path,
                                                                    folder):
    """Kernels call sim.core's helpers and read constants of agents/ (BorrowerStatus,
    LenderStatus, BIG): a file added under any of the folders, at any depth, gives another
    directory."""
    d = _tree(tmp_path, "def psum(a): return 0.0\n")
    monkeypatch.setattr(numba_cache, "_PACKAGE", d)
    before = numba_cache.source_hash()
    (d / folder).mkdir(parents=True, exist_ok=True)
    (d / folder / "extra.py").write_text("LIMIT = 2\n")
    assert numba_cache.source_hash() != before


def test_the_default_directory_is_the_checkouts_else_the_users_cache(fresh, monkeypatch):
    """No NUMBA_CACHE_DIR: ``.numba_cache`` beside ``sim/`` when it can be made; else (here a
    file of that name is in the way) ``$XDG_CACHE_HOME/liqsim-numba``, or
    ``~/.cache/liqsim-numba`` without XDG_CACHE_HOME."""
    pkg = _tree(fresh / "pkg", "def psum(a): return 0.0\n")
    monkeypatch.setattr(numba_cache, "_PACKAGE", pkg)
    name = f"src-{numba_cache.source_hash()}"
    assert numba_cache.prepare() == str(pkg / ".numba_cache" / name)
    assert os.environ["NUMBA_CACHE_DIR"] == str(pkg / ".numba_cache" / name)

    def again() -> str | None:
        monkeypatch.setattr(numba_cache, "_prepared", False)
        monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
        return numba_cache.prepare()

    (pkg / ".numba_cache").rmdir()
    (pkg / ".numba_cache").write_text("in the way")
    monkeypatch.setenv("XDG_CACHE_HOME", str(fresh / "xdg"))
    assert again() == str(fresh / "xdg" / "liqsim-numba" / name)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(fresh / "home"))
    assert again() == str(fresh / "home" / ".cache" / "liqsim-numba" / name)
