"""sim.core.numba_cache: numba's cache in a directory per version of the compiled sources."""

import os
import shutil
import subprocess
import sys
import threading
import time
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

    assert (pkg / ".numba_cache" / name).is_dir()  # made (and marked used) by prepare()
    shutil.rmtree(pkg / ".numba_cache")
    (pkg / ".numba_cache").write_text("in the way")
    monkeypatch.setenv("XDG_CACHE_HOME", str(fresh / "xdg"))
    assert again() == str(fresh / "xdg" / "liqsim-numba" / name)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(fresh / "home"))
    assert again() == str(fresh / "home" / ".cache" / "liqsim-numba" / name)


DAY = 86400.0


def _versions(root: Path, ages_days: dict[str, float], now: float) -> None:
    """Version directories ``src-<name padded to 16 hex digits>`` last used ``age`` days ago,
    each with a file in a subdirectory, as numba leaves them."""
    for name, age in ages_days.items():
        d = root / f"src-{name:0>16}"
        (d / "sim" / "world").mkdir(parents=True)
        (d / "sim" / "world" / "k.nbi").write_bytes(b"x")
        os.utime(d, (now - age * DAY, now - age * DAY))


def _left(root: Path) -> set[str]:
    return {p.name.removeprefix("src-").lstrip("0") for p in root.iterdir()}


def test_prepare_marks_its_directory_and_prunes_versions_unused_for_days(fresh, monkeypatch):
    """Of the other versions, those unused for more than KEEP_DAYS days go, unless among the
    KEEP_LATEST most recently used (the current one counts); what is not a version directory
    (other names, a file, a symlink) stays; a prune's leftover goes."""
    root = fresh / "cache"
    now = time.time()
    _versions(root, {"a1": 0.5, "a2": 1.0, "a3": 2.9, "b1": 3.1, "b2": 10.0, "b3": 400.0},
              now)
    (root / "src-notahash").mkdir()
    (root / "other").mkdir()
    (root / f"src-{'c1':0>16}").write_text("a file")
    (root / f"src-{'c2':0>16}").symlink_to(root / "other")
    os.utime(root / "other", (now - 30 * DAY, now - 30 * DAY))
    leftover = root / f"src-{'d1':0>16}.deleting-{'e1':0>16}"
    (leftover / "sub").mkdir(parents=True)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(root))
    target = Path(numba_cache.prepare())
    assert target.is_dir() and time.time() - target.stat().st_mtime < 60  # marked used
    assert _left(root) == {"a1", "a2", "a3", target.name.removeprefix("src-").lstrip("0"),
                           "notahash", "other", "c1", "c2"}
    assert (root / "other").is_dir()  # the symlink's target untouched


def test_the_latest_versions_are_kept_however_old(fresh):
    root = fresh / "cache"
    now = time.time()
    _versions(root, {"a1": 10.0, "a2": 20.0, "a3": 30.0, "a4": 40.0, "cafe": 0.0}, now)
    deleted = numba_cache.prune(root, root / f"src-{'cafe':0>16}", now)
    assert sorted(deleted) == [f"src-{'a3':0>16}", f"src-{'a4':0>16}"]  # the oldest first
    assert _left(root) == {"a1", "a2", "cafe"}  # with the current one, KEEP_LATEST = 3


def test_a_prune_deletes_at_most_max_pruned_the_oldest_first(fresh):
    root = fresh / "cache"
    now = time.time()
    _versions(root, {f"{i:x}": 10.0 + i for i in range(1, 13)}, now)
    deleted = numba_cache.prune(root, root / "src-0000000000000000", now)
    n = numba_cache.MAX_PRUNED
    assert deleted == [f"src-{i:016x}" for i in range(12, 12 - n, -1)]
    assert len(_left(root)) == 12 - n
    assert numba_cache.prune(root, root / "src-0000000000000000", now)  # the next process


def test_pruning_never_fails(fresh, monkeypatch):
    """A root that cannot be read, a directory another process renamed or deleted first, a
    tree that cannot be deleted: nothing raises, the rest goes on."""
    assert numba_cache.prune(fresh / "missing", fresh / "missing" / "src-0", time.time()) == []
    root = fresh / "cache"
    now = time.time()
    _versions(root, {"a1": 10.0, "a2": 11.0, "a3": 12.0, "a4": 13.0, "a5": 14.0}, now)
    real = os.rename

    def rename(src, dst):
        if Path(src).name.endswith("a4"):  # another process took it first
            raise FileNotFoundError(src)
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    assert numba_cache.prune(root, root / "src-0000000000000000", now) == [
        f"src-{'a5':0>16}", f"src-{'a3':0>16}"]
    assert _left(root) == {"a1", "a2", "a4"}
    monkeypatch.setattr(numba_cache, "prune", lambda *_a: 1 / 0)  # even a bug in it
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(root))
    assert numba_cache.prepare().startswith(str(root))


def test_concurrent_prunes_delete_each_directory_once(fresh):
    """Prunes racing on one root (threads here, processes alike: the rename decides) delete
    every old directory exactly once between them and never raise."""
    root = fresh / "cache"
    now = time.time()
    _versions(root, {f"{i:x}": 10.0 + i for i in range(1, 9)}, now)
    keep = root / "src-0000000000000000"
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def one():
        barrier.wait()
        results.append(numba_cache.prune(root, keep, now))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [n for r in results for n in r]
    assert len(results) == 4 and len(done) == len(set(done))
    assert _left(root) == {f"{i:x}" for i in range(1, 9)} - {n[4:].lstrip("0") for n in done}
    assert len(done) >= numba_cache.MAX_PRUNED  # the oldest four at least, by someone


_KERNEL_MODULE = """
from sim.core.jit import kernel


@kernel
def add(a, b):
    return a + b
"""

_USE_THEN_DELETE = """
import os, shutil, sys
sys.path.insert(0, sys.argv[1])
import mod
assert mod.add(1, 2) == 3  # compiled and saved in the cache
used = os.environ["NUMBA_CACHE_DIR"]
shutil.rmtree(used)  # another process prunes it
assert mod.add(1.5, 2.0) == 3.5  # new types: a miss, a compile, saved again
assert mod.add(1, 2) == 3
print(used)
"""


def test_a_process_whose_directory_is_deleted_goes_on(tmp_path):
    """numba reads a missing cache as a miss and makes the directory again when it saves: a
    process whose version directory another process prunes keeps running and compiling."""
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "mod.py").write_text(_KERNEL_MODULE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", _USE_THEN_DELETE, str(tmp_path / "mod")],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    used = Path(out.stdout.strip().splitlines()[-1])
    assert used.parent == tmp_path / "cache" and len(list(used.rglob("*.add-*.nbi"))) == 1
