"""Writing a run's outputs: ``results/<name>/``.

Every file is written under a temporary name and renamed into place (``os.replace`` is atomic
on POSIX), so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import networkx as nx

from sim import metrics
from sim.model import LiquidationModel
from sim.network import build_graph


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: Path) -> None:
    """Give the temporary file ordinary permissions, then rename it into place."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


def write_run(model: LiquidationModel, outdir: str | Path) -> dict:
    """Write config, summary, series, panel, events, network and (last) the manifest."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # never vouch for a half-rewritten run
    summary = metrics.summary(model)
    write_json(out / "config.json", model.cfg.model_dump(mode="json"))
    for name, frame in (("series", metrics.series(model)), ("panel", metrics.panel(model)),
                        ("events", metrics.events(model))):
        atomic_write_with(out / f"{name}.parquet",
                          lambda tmp, f=frame: f.to_parquet(tmp, engine="pyarrow", index=False))
    graph = build_graph(model)
    atomic_write_with(out / "network.graphml", lambda tmp: nx.write_graphml(graph, tmp))
    write_json(out / "summary.json", summary)
    write_manifest(out, model.cfg)
    return summary


RUN_FILES = ("config.json", "series.parquet", "panel.parquet", "events.parquet",
             "network.graphml", "summary.json")


def write_manifest(outdir: str | Path, cfg, extra: tuple | list = ()) -> None:
    """(Re)write ``manifest.json`` (sim/provenance.py): hashes of :data:`RUN_FILES` + ``extra``.

    Called last by :func:`write_run`; call it again with the figure paths after writing
    figures so that they are hashed too. :func:`write_run` first removes any older manifest,
    so a crash mid-write leaves no manifest and ``liqsim verify`` refuses the directory
    instead of vouching for a mix of old and new outputs.
    """
    from sim.provenance import MANIFEST, manifest

    names = [*RUN_FILES, *(Path(p).name for p in extra)]
    write_json(Path(outdir) / MANIFEST, manifest(outdir, cfg, names))
