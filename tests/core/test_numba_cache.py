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
