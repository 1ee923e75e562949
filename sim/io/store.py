"""Writing a run's outputs: ``results/<name>/``, and the ``manifest.json`` of a run or a sweep.

A run's directory is written whole into a fresh temporary sibling and swapped into place
(:func:`replace_dir`), so a failure or a crash never leaves a half-written or mixed directory
behind. Single files are written under a temporary name and renamed into place
(``os.replace`` is atomic on POSIX).

The manifest (:func:`manifest`, :func:`write_manifest`, :func:`write_sweep_manifest`) is
written here, with the outputs; :mod:`sim.qa.provenance` reads and verifies it (it re-runs a
run through :mod:`sim.world.runner` and this module, or a sweep's runs through
:mod:`sim.batch.sweep`), so the writing side imports neither.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import networkx as nx

from sim.core import numerics
from sim.core.config import ConfigError, Scenario
from sim.core.network import build_graph
from sim.core.version import liqsim_version
from sim.io.atomic import atomic_write_with, umask, write_json
from sim.io.datadict import to_parquet
from sim.io.ledger import read_ok_runs
from sim.world import metrics
from sim.world.model import LiquidationModel

RUN_FILES = ("config.json", "series.parquet", "panel.parquet", "events.parquet",
             "network.graphml", "summary.json")


def run_dir(outdir: str | Path, also: Iterable[str] = ()) -> Path:
    """The absolute directory a run writes to, after checking that it may be replaced.

    A symbolic link to a directory names that directory (the link is kept). Raises
    :class:`ConfigError` for a dangling link, a path that is not a directory, or a directory
    holding anything but a run's outputs (:data:`RUN_FILES`, the manifest, and the file names
    in ``also``: the CLI passes its figures and ``liqsim animate``'s default GIF), which
    :func:`write_run` would delete when it swaps the new run in.
    """
    given = Path(outdir)
    if given.is_symlink() and not given.exists():
        raise ConfigError(f"--out {given}: is a symbolic link to a missing "
                          f"{os.readlink(given)}")
    out = Path(os.path.realpath(given))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {given}: exists and is not a directory")
    if out.is_dir():
        known = {*RUN_FILES, MANIFEST, *also}
        foreign = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in os.scandir(out)
                         if not (e.is_file(follow_symlinks=False) and (
                             e.name in known
                             or (e.name.startswith(".") and e.name.endswith(".tmp")))))
        if foreign:
            name, is_dir = foreign[0]
            raise ConfigError(f"--out {given}: holds {name!r}{' (a directory)' if is_dir else ''}"
                              ", which is not a run's output; a run replaces its whole "
                              "directory, choose another")
    return out


def replace_dir[T](outdir: Path, fill: Callable[[Path], T]) -> T:
    """Call ``fill(tmp)`` on a fresh sibling directory of ``outdir``, then swap it into place.

    All or nothing: if ``fill`` or the swap fails, ``outdir`` is left as it was and the
    temporary directory is removed. An existing ``outdir`` is renamed aside, the new one
    renamed in, then the old one deleted; concurrent writers each swap in a complete
    directory, so the last to finish wins and the contents are never mixed.

    A writer killed outright (SIGKILL, out of memory) cannot remove its temporary directory,
    so each writer holds an exclusive ``flock`` on its own while it fills it, and, before
    making one, removes the ``.<name>.*.tmp`` directories nobody holds (and ``.<name>.*.old``
    ones, which only a killed swap leaves), with the parent directory locked: the
    kernel releases a dead writer's lock, so only a live writer's directory is kept.
    """
    outdir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(outdir.parent) as locked:
        if locked:
            remove_stale_temporaries(outdir)
        tmp = Path(tempfile.mkdtemp(dir=outdir.parent, prefix=f".{outdir.name}.",
                                    suffix=".tmp"))
        held = _hold(tmp)  # before the parent is unlocked: a cleaner never sees it free
    try:
        result = fill(tmp)
        os.chmod(tmp, 0o777 & ~umask())
        with _locked(outdir.parent):
            _swap_in(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if held is not None:
            os.close(held)
    return result


@contextlib.contextmanager
def _locked(directory: Path):
    """Hold an exclusive ``flock`` on ``directory`` itself (no lock file is left behind);
    yields False, and locks nothing, if the directory cannot be opened for it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)


def _hold(directory: Path) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``directory`` (None if it cannot
    be opened: the directory is then unprotected, as before these locks)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fresh: nobody else can hold it
    return fd


def remove_stale_temporaries(outdir: Path) -> list[str]:
    """Delete the temporary siblings of ``outdir`` (``.<name>.XXXXXXXX.tmp`` and ``.old``
    directories, made by :func:`replace_dir` and :func:`_swap_in`) that no live writer holds;
    return their names. Call it with the parent directory locked (:func:`_locked`)."""
    pattern = re.compile(re.escape(f".{outdir.name}.") + r"[a-z0-9_]{8}\.(tmp|old)")
    removed = []
    for entry in os.scandir(outdir.parent):
        if not (pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)):
            continue
        path = Path(entry.path)
        if entry.name.endswith(".tmp"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live writer is filling it
                os.close(fd)
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        else:  # .old: made and removed within a swap, which holds the parent's lock
            shutil.rmtree(path, ignore_errors=True)
        removed.append(entry.name)
    return removed


def _swap_in(new: Path, out: Path, attempts: int = 50) -> None:
    """Rename directory ``new`` to ``out``, moving an existing ``out`` aside first."""
    for _ in range(attempts):
        try:
            os.rename(new, out)  # replaces a missing or empty ``out``
            return
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        old = tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old")
        try:
            os.rename(out, old)
        except FileNotFoundError:  # another writer moved it aside first: try again
            os.rmdir(old)
            continue
        except BaseException:
            os.rmdir(old)
            raise
        try:
            os.rename(new, out)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another writer's is in: replace it
                shutil.rmtree(old, ignore_errors=True)
                continue
            with contextlib.suppress(OSError):
                os.rename(old, out)  # put the old directory back
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(out))


def _write_outputs(model: LiquidationModel, out: Path,
                   extras: Callable[[LiquidationModel, Path], list] | None) -> dict:
    summary = metrics.summary(model)
    write_json(out / "config.json", model.cfg.model_dump(mode="json"))
    gens = model.env.names
    for name, frame in (("series", metrics.series(model)), ("panel", metrics.panel(model)),
                        ("events", metrics.events(model))):
        # with each field's unit and description (sim/io/datadict.py, docs/data_dictionary.md)
        atomic_write_with(out / f"{name}.parquet",
                          lambda tmp, f=frame, n=name: to_parquet(f, n, tmp, gens))
    graph = build_graph(model)
    atomic_write_with(out / "network.graphml", lambda tmp: nx.write_graphml(graph, tmp))
    write_json(out / "summary.json", summary)
    extra = extras(model, out) if extras is not None else []
    write_manifest(out, model.cfg, extra)
    return summary


def write_run(model: LiquidationModel, outdir: str | Path,
              extras: Callable[[LiquidationModel, Path], list] | None = None,
              also: Iterable[str] = ()) -> dict:
    """Write config, summary, series, panel, events, network, the files ``extras(model, dir)``
    writes (it returns their paths: the CLI passes :func:`sim.views.plots.write_figures`, so the
    core never imports plots), and (last) the manifest to ``outdir``; return the summary.

    The directory is replaced all or nothing (:func:`replace_dir`): a failure leaves the
    previous run's directory untouched, and no file of an earlier run (a figure a run
    without ``extras`` does not draw) survives. Raises :class:`ConfigError` if ``outdir``
    may not be replaced (:func:`run_dir` with ``also``), ``OSError`` if it cannot be written.
    """
    return replace_dir(run_dir(outdir, also), lambda tmp: _write_outputs(model, tmp, extras))


def write_manifest(outdir: str | Path, cfg, extra: tuple | list = ()) -> None:
    """(Re)write ``manifest.json`` (:func:`manifest`): hashes of :data:`RUN_FILES` + ``extra``.

    Called last by :func:`write_run`, with the figure paths when it draws them; call it again
    with the paths of files added to a run directory afterwards so that they are hashed too.
    """
    names = [*RUN_FILES, *(Path(p).name for p in extra)]
    write_json(Path(outdir) / MANIFEST, manifest(outdir, cfg, names))


# --------------------------------------------------------------------------- manifests
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
PACKAGES = ("numpy", "pandas", "pyarrow", "networkx", "mesa", "scipy", "pydantic", "numba",
            "llvmlite")
SWEEP = "sweep"  # the manifest "kind" of a sweep directory
SPEC_COPY = "spec.toml"


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    """Where a run happened: platform, Python and the numeric libraries' versions, and the
    numeric platform (:func:`sim.core.numerics.platform_info`: CPU, SIMD targets, BLAS, C library)
    that decides whether another machine is guaranteed to reproduce the run."""
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "packages": {p: _package_version(p) for p in PACKAGES},
            "numeric_platform": numerics.platform_info()}


def _output_files(outdir: Path, names) -> dict[str, dict]:
    """SHA-256 and size of each named output file that exists."""
    files = {}
    for name in sorted(set(names)):
        p = outdir / name
        if p.is_file():
            files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return files


def _inputs(cfg: Scenario) -> dict:
    if cfg.network.kind != "edgelist" or not cfg.network.edgelist:
        return {}
    p = Path(cfg.network.edgelist)
    return {"network.edgelist": {"path": str(p.resolve()),
                                 "sha256": sha256_file(p) if p.is_file() else None}}


def _header(kind: str) -> dict:
    return {"manifest_version": MANIFEST_VERSION, "kind": kind, "liqsim_version": liqsim_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def manifest(outdir: str | Path, cfg: Scenario, names) -> dict:
    """The manifest of a results directory whose output files ``names`` are all written."""
    return {
        **_header("run"),
        "scenario": cfg.name,
        "seed": int(cfg.seed),
        "config": cfg.model_dump(mode="json"),
        "environment": environment(),
        "inputs": _inputs(cfg),
        "files": _output_files(Path(outdir), names),
    }


def ok_runs_digest(rows) -> str:
    """SHA-256 of a ledger's ok runs (:func:`sim.io.ledger.read_ok_runs`) as sorted
    ``[param_hash, seed, metrics JSON]`` triples: the ledger's numbers, not its bytes."""
    triples = sorted([h, seed, mets] for h, seed, _point, _rep, _params, mets in rows)
    return hashlib.sha256(json.dumps(triples, separators=(",", ":")).encode()).hexdigest()


def sweep_manifest(out_dir: str | Path, spec) -> dict:
    """The manifest of a finished sweep directory (``spec``: a resolved
    ``sim.batch.sweep.SweepSpec``)."""
    d = Path(out_dir)
    rows = read_ok_runs(d)
    names = [SPEC_COPY, *(f"series/{p.name}" for p in (d / "series").glob("*.parquet"))]
    return {
        **_header(SWEEP),
        "sweep": spec.name,
        "seed": int(spec.root_seed),
        "seeds": spec.seeds,
        "spec": spec.model_dump(mode="json"),
        "config": spec.base_config,
        "environment": environment(),
        "ledger": {"ok_runs": len(rows), "ok_sha256": ok_runs_digest(rows)},
        "files": _output_files(d, names),
    }


def write_sweep_manifest(out_dir: str | Path, spec) -> None:
    """Write ``DIR/manifest.json`` of a finished sweep, atomically (called last)."""
    write_json(Path(out_dir) / MANIFEST, sweep_manifest(out_dir, spec))
