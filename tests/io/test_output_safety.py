"""Output safety: a run's directory is replaced all or nothing, interrupted or failed writes leave
nothing half-written, odd ``--out`` paths and ``app --host`` values are one line (exit 2)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sim.batch.analyze
import sim.views.animate
import sim.views.app
from sim.cli import main
from sim.core.config import ConfigError
from sim.io import store
from sim.qa.provenance import MANIFEST

RUN = {*store.RUN_FILES, MANIFEST}


def _run(out: Path, *extra: str) -> int:
    return main(["run", "--months", "2", "--no-figures", "--out", str(out), *extra])


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("liqsim: error: ") and "\n" not in err, err
    return err


# --------------------------------------------------------------------------- run: all or nothing
@pytest.mark.slow
@pytest.mark.parametrize("exc, code", [(OSError(errno.EFBIG, "File too large"), 2),
                                       (KeyboardInterrupt(), 130)])
def test_a_failed_rewrite_leaves_the_old_run_untouched_and_no_temp_dir(tmp_path, monkeypatch,
                                                                       capsys, exc, code):
    d = tmp_path / "d"
    assert _run(d) == 0
    before = _snapshot(d)
    assert set(before) == RUN

    def boom(*args, **kwargs):  # after config.json and the Parquet files, before the rest
        raise exc

    monkeypatch.setattr(store.nx, "write_graphml", boom)
    capsys.readouterr()
    assert _run(d, "--seed", "9") == code
    err = capsys.readouterr().err.strip()
    assert err == (f"liqsim: error: cannot write {d}: File too large" if code == 2
                   else f"liqsim: interrupted; {d} left as it was")
    assert _snapshot(d) == before
    assert os.listdir(tmp_path) == ["d"]  # no .d.*.tmp / .d.*.old sibling left


@pytest.mark.slow
def test_a_no_figures_rerun_leaves_no_stale_figure(tmp_path):
    d = tmp_path / "d"
    assert _run(d) == 0
    (d / "fire_sales.png").write_bytes(b"a figure of the previous run")
    (d / "cascade.gif").write_bytes(b"an animation of the previous run")
    assert _run(d, "--seed", "3") == 0
    assert set(os.listdir(d)) == RUN
    assert os.listdir(tmp_path) == ["d"]


@pytest.mark.slow
def test_a_symlink_to_a_run_directory_is_kept_and_its_target_replaced(tmp_path):
    target, link = tmp_path / "target", tmp_path / "link"
    assert _run(target) == 0
    (target / "fire_sales.png").write_bytes(b"stale")
    link.symlink_to(target)
    assert _run(link, "--seed", "4") == 0
    assert link.is_symlink() and set(os.listdir(target)) == RUN
    assert '"seed": 4' in (target / "config.json").read_text()


def test_the_last_writer_to_finish_wins_whole(tmp_path):
    """Another writer swaps its directory in while this one is still writing: this one,
    finishing last, replaces it whole, and neither leaves a temporary directory."""
    out = tmp_path / "o"

    def other(tmp: Path) -> None:
        (tmp / "a").write_text("other")
        (tmp / "b").write_text("other")

    def this(tmp: Path) -> str:
        (tmp / "a").write_text("this")
        store.replace_dir(out, other)
        return "done"

    assert store.replace_dir(out, this) == "done"
    assert _snapshot(out) == {"a": b"this"}
    assert os.listdir(tmp_path) == ["o"]


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    (out / "a").write_text("old")
    real = os.rename

    def flaky(src, dst):  # the new directory cannot be renamed in once the old one is aside
        if Path(dst) == out and Path(src).name.endswith(".tmp") and not out.exists():
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(store.os, "rename", flaky)
    with pytest.raises(OSError, match="Input/output error"):
        store.replace_dir(out, lambda tmp: (tmp / "a").write_text("new"))
    assert _snapshot(out) == {"a": b"old"}
    assert os.listdir(tmp_path) == ["o"]


# --------------------------------------------------------------------------- odd --out paths
def test_a_dangling_symlink_is_refused(tmp_path, capsys):
    link = tmp_path / "dl"
    link.symlink_to(tmp_path / "nowhere")
    assert _run(link) == 2
    assert _one_error_line(capsys) == (f"liqsim: error: --out {link}: is a symbolic link to "
                                       f"a missing {tmp_path / 'nowhere'}")
    assert os.listdir(tmp_path) == ["dl"]


@pytest.mark.slow
@pytest.mark.parametrize("entry, shown", [("summary.json", "'summary.json' (a directory)"),
                                          ("notes.txt", "'notes.txt'")])
def test_a_directory_holding_anything_but_a_run_is_not_replaced(tmp_path, capsys, entry, shown):
    d = tmp_path / "d"
    assert _run(d) == 0
    (d / entry).unlink(missing_ok=True)
    if entry == "summary.json":
        (d / entry / "kept").mkdir(parents=True)  # a directory where an output file goes
    else:
        (d / entry).write_text("mine")
    before = sorted(os.listdir(d))
    assert _run(d) == 2
    assert _one_error_line(capsys) == (f"liqsim: error: --out {d}: holds {shown}, which is not "
                                       "a run's output; a run replaces its whole directory, "
                                       "choose another")
    assert sorted(os.listdir(d)) == before and (d / entry).exists()
    assert os.listdir(tmp_path) == ["d"]


@pytest.mark.parametrize("cmd", [["run"], ["sweep", "spec.toml"], ["analyze", "sw"],
                                 ["animate"], ["validate"], ["bench"]])
def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys, cmd):
    monkeypatch.chdir(tmp_path)
    assert main([*cmd, "--out", ""]) == 2
    assert _one_error_line(capsys) == ("liqsim: error: Invalid value for '--out': must not be "
                                       "empty (use . for the current directory)")
    assert os.listdir(tmp_path) == []


def test_a_non_utf8_out_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--months", "2", "--out", os.fsdecode(b"u\xff")]) == 2
    assert _one_error_line(capsys) == ("liqsim: error: Invalid value for '--out': u\\xff is not "
                                       "a valid UTF-8 path")
    assert os.listdir(tmp_path) == []


def test_analyze_write_error_is_one_line(tmp_path, monkeypatch, capsys):
    def denied(directory, out):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(sim.batch.analyze, "analyze", denied)
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert _one_error_line(capsys) == f"liqsim: error: cannot write {tmp_path / 'a'}: " \
                                      "Permission denied"
    assert main(["analyze", str(tmp_path)]) == 2  # default DIR/analysis
    assert _one_error_line(capsys).startswith(f"liqsim: error: cannot write {tmp_path}/analysis")


# --------------------------------------------------------------------------- animate
@pytest.mark.parametrize("at_frame", [1, 2])
def test_ctrl_c_during_animate_is_exit_130_and_leaves_no_gif(tmp_path, monkeypatch, capsys,
                                                             at_frame):
    """At the first frame, matplotlib's PillowWriter.finish used to raise IndexError on its
    empty frame list, hiding the KeyboardInterrupt."""
    calls = []
    real = sim.views.animate.draw_frame

    def draw(*args):
        calls.append(args[-1])
        if len(calls) == at_frame:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(sim.views.animate, "draw_frame", draw)
    gif = tmp_path / "x" / "a.gif"
    assert main(["animate", "--months", "2", "--out", str(gif)]) == 130
    assert capsys.readouterr().err.strip() == f"liqsim: interrupted; no GIF written to {gif}"
    assert len(calls) == at_frame
    assert os.listdir(gif.parent) == []


@pytest.mark.slow
def test_an_animate_write_error_is_one_line_and_leaves_no_gif(tmp_path, monkeypatch, capsys):
    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sim.views.animate.GifWriter, "finish", full)
    gif = tmp_path / "a.gif"
    assert main(["animate", "--months", "1", "--out", str(gif)]) == 2
    assert _one_error_line(capsys) == f"liqsim: error: cannot write {gif}: No space left on device"
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- app --host
def test_an_empty_host_is_refused(capsys):
    assert main(["app", "--host", " ", "--port", "8799"]) == 2
    assert _one_error_line(capsys) == ("liqsim: error: --host must not be empty (use 0.0.0.0 "
                                       "to listen on every interface)")


def test_an_unresolvable_host_is_named(monkeypatch):
    def gai(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(sim.views.app.socket, "getaddrinfo", gai)
    with pytest.raises(ConfigError, match=r"^--host nosuch\.invalid: cannot resolve host "
                                          r"nosuch\.invalid$"):
        sim.views.app.check_port("nosuch.invalid", 8799)


def test_url_brackets_an_ipv6_literal():
    assert sim.views.app.url("::1", 8799) == "http://[::1]:8799/"
    assert sim.views.app.url("127.0.0.1", 8765) == "http://127.0.0.1:8765/"
    assert sim.views.app.url("localhost", 80) == "http://localhost:80/"


def _free_ipv6_port() -> int:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback here")


def test_an_ipv6_host_is_probed_over_ipv6_and_printed_bracketed(monkeypatch, capsys):
    port = _free_ipv6_port()
    served = []
    monkeypatch.setattr(sim.views.app, "serve", lambda *args: served.append(args) or 0)
    assert main(["app", "--host", "::1", "--port", str(port)]) == 0
    assert served == [("::1", port, None, None)]  # no scenario, no --scenario-dir
    assert f"liqsim app: http://[::1]:{port}/" in capsys.readouterr().err
    with socket.socket(socket.AF_INET6) as busy:  # and a taken IPv6 port is reported as such
        busy.bind(("::1", port))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot listen there"):
            sim.views.app.check_port("::1", port)


@pytest.mark.parametrize("cmd", ["validate", "bench"])
def test_validate_and_bench_write_errors_are_one_line(tmp_path, monkeypatch, capsys, cmd):
    import sim.qa.bench
    import sim.qa.validate

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sim.qa.validate, "run_all", lambda **kwargs: {"checks": []})
    monkeypatch.setattr(sim.qa.validate, "write_report", full)
    monkeypatch.setattr(sim.qa.bench, "run_bench", full)
    assert main([cmd, "--out", str(tmp_path / "o")]) == 2
    assert _one_error_line(capsys) == (f"liqsim: error: cannot write {tmp_path / 'o'}: "
                                       "No space left on device")


@pytest.mark.slow
def test_the_core_writes_a_run_without_importing_plots_app_or_cli(tmp_path):
    """README layout: the core (store included) never imports plots, animate, app or cli; the
    CLI hands its figure writer to store.write_run."""
    code = ("import sys\nimport sim.world.model\n"
            "from sim.core import config, contagion, environment, finance, market, network\n"
            "from sim.world import metrics, runner\n"
            "from sim.io import store\n"
            "from sim.qa import provenance\n"
            "m = runner.run_scenario(config.load_scenario('baseline', months=2))\n"
            f"store.write_run(m, {str(tmp_path / 'r')!r})\n"
            "print(sorted(n for n in ('sim.views.plots', 'sim.views.animate', 'sim.views.app', "
            "'sim.cli') if n in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert (tmp_path / "r" / "manifest.json").is_file()


def test_an_unreadable_edge_list_is_a_read_error_not_a_write_error(tmp_path, monkeypatch,
                                                                   capsys):
    """The model reads the edge list while it is built: an OSError there names the edge list,
    not the output directory (the run's write-error handler covers only the writing)."""
    edges = tmp_path / "edges.txt"
    edges.write_text("0 1\n")
    real_open = os.open

    def failing_open(path, *args, **kwargs):  # root may read a chmod 000 file: fake it
        if Path(path) == edges:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    assert _run(tmp_path / "out", "--set", "network.kind=edgelist",
                "--set", f"network.edgelist={edges}") == 2
    assert _one_error_line(capsys) == (f"liqsim: error: network.edgelist: cannot read "
                                       f"'{edges}': Permission denied")
    assert not (tmp_path / "out").exists()


def test_a_run_checks_that_the_parent_of_its_directory_is_writable(tmp_path, monkeypatch,
                                                                    capsys):
    """A run's directory is built beside it and renamed in, so the parent must be writable
    (root ignores permissions here, so os.access is made to say no for the parent only)."""
    parent = tmp_path / "p"
    (parent / "out").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != parent
                        and real_access(path, mode))
    assert _run(parent / "out") == 2
    assert _one_error_line(capsys) == (f"liqsim: error: --out {parent / 'out'}: directory is "
                                       "not writable")


# --------------------------------------------------------------------------- killed runs
def _liqsim() -> list[str]:
    script = Path(sys.executable).with_name("liqsim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sim.cli"]


def _kill_while_writing(out: Path, cwd: Path) -> list[str]:
    """Start a real `liqsim run`, SIGKILL it while it fills its temporary directory, and
    return the temporary directories it left."""
    proc = subprocess.Popen([*_liqsim(), "run", "--out", str(out)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(out.parent.glob(f".{out.name}.*.tmp")):
                proc.kill()
                break
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait()
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*.tmp"))


@pytest.mark.slow
def test_a_killed_run_leaves_a_temporary_directory_the_next_run_removes(tmp_path, capsys):
    """A SIGKILLed `liqsim run` cannot remove its temporary directory; the next run to the
    same directory removes every one nobody holds (a killed writer's lock died with it), and
    keeps a live writer's, another name's, and anything not made by a run."""
    out = tmp_path / "res" / "out"
    out.parent.mkdir()
    left = _kill_while_writing(out, tmp_path)
    assert len(left) == 1, "the run finished before it could be killed"
    assert not out.exists()
    live = out.parent / ".out.abcdefgh.tmp"  # a writer still filling its directory
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (out.parent / ".out.zyxwvut_.old").mkdir()  # a swap killed between its two renames
    (out.parent / ".other.abcdefgh.tmp").mkdir()  # another run's
    (out.parent / ".out.notours.tmp").mkdir()  # not a name replace_dir makes
    try:
        assert _run(out) == 0
    finally:
        os.close(fd)
    capsys.readouterr()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        ".other.abcdefgh.tmp", ".out.abcdefgh.tmp", ".out.notours.tmp", "out"]
    assert (out / "manifest.json").is_file()


def test_atomic_writes_load_neither_the_model_nor_numpy(tmp_path):
    """sim.io.atomic is standard library only: a figure or report writer that imports it does
    not load the model (sim.io.store does), and a file it writes is complete and alone."""
    code = ("import sys, pathlib, sim.io.atomic as a\n"
            f"p = pathlib.Path({str(tmp_path / 'x' / 'f.json')!r})\n"
            "a.write_json(p, {'k': 1})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('sim', 'agents', 'numpy'))))\n"
            "import json\n"
            "print(json.loads(p.read_text()), sorted(q.name for q in p.parent.iterdir()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "['sim', 'sim.io', 'sim.io.atomic']"
    assert out[1] == "{'k': 1} ['f.json']"  # no temporary file left beside it
