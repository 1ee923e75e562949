"""The command line as a new user meets it: --version, scenarios, keys, "did you mean",
appending a shock, compare --set/--csv, defaults in --help, money signs, progress lines
without a TTY, Ctrl-C / SIGTERM of a sweep, and a sweep refusing a run's directory."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.cli import _fmt_money, main
from sim.core.config import ConfigError, Scenario, load_scenario
from sim.core.keys import DOCS, describe_keys
from sim.core.version import liqsim_version

REPO = Path(__file__).resolve().parents[2]
LIQSIM = str(Path(sys.executable).parent / "liqsim")


def _cli(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "COLUMNS": "200", **env}
    return subprocess.run([LIQSIM, *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=300, check=False)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"liqsim {liqsim_version()}"


def test_scenarios_lists_descriptions(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "crypto_winter" in out and "BTC -60 % and rents -20 % in month 3" in out
    assert "Baseline with the repo desk switched on." in out


def test_keys_lists_default_bounds_unit_and_meaning(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["keys", "policy.repo"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "policy.repo.h0" in line)
    assert all(s in row for s in ("0.2", "0 <= x <= 1", "fraction", "base haircut"))
    assert "lenders.count" not in out
    assert main(["keys", "polcy"]) == 2
    assert "no config key starts with 'polcy'" in capsys.readouterr().err


def test_every_config_key_is_documented():
    rows = describe_keys()
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)) == 199  # 130 + 11 (issue 14 D) + 4 (B) + 22 (C) + 7 (A)
    # + 15 (issue 15 A, secured repo and buyer of last resort) + 1 (15 B, metrics.system_loss)
    # + 2 (issue 15: the policies' funding_spread) + 1 (issue 16, val2022: shocks.N.lender_type)
    # + 2 (issue 16, backtest: environment.rent_path.N.generation and .points)
    # + 2 (issue 16: environment.rent_path.N.scope, start)
    # + 2 (issue 16, leadtime: environment.lead_time_path.N.generation and .points)
    assert all(r.meaning for r in rows)
    assert "environment.generations.N.list_price" in keys and "shocks.N.size" in keys
    row = next(r for r in rows if r.key == "lenders.types.TYPE.share")
    assert row.default == "bank 0.3 · private_credit 0.5 · abl 0.2"
    assert next(r for r in rows if r.key == "seed").default == str(Scenario().seed)
    # no stale entry: every documented field exists
    import sim.core.config as c
    for cls, fields in DOCS.items():
        assert set(fields) <= set(getattr(c, cls).model_fields), cls


@pytest.mark.parametrize(("args", "fragment"), [
    (["--set", "lenders.cont=3"], "unknown key 'lenders.cont' (did you mean 'lenders.count'?)"),
    (["--set", "polcy.repo.enabled=true"], "unknown key 'polcy' (did you mean 'policy'?)"),
    (["--set", "policy.repo.haircut=0.3"], "unknown key 'policy.repo.haircut'"),
    (["--set", "lenders.count+=3"], "'lenders.count+': only a list can be appended to"),
])
def test_unknown_keys_get_a_suggestion(args, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.splitlines()) == 1


def test_unknown_key_in_a_file_gets_a_suggestion(tmp_path):
    p = tmp_path / "w.toml"
    p.write_text("[environment]\nrent_deflaton = 0.2\n")
    with pytest.raises(ConfigError, match=r"unknown key 'environment.rent_deflaton' \(did you "
                                          r"mean 'environment.rent_deflation'\?\)"):
        load_scenario(p)


def test_set_appends_a_shock(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shock = 'shocks+={month=2, kind="btc", size=0.5}'
    assert main(["run", "crypto_winter", "--months", "3", "--no-figures", "--set", shock,
                 "--out", "out"]) == 0
    capsys.readouterr()
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    base = load_scenario("crypto_winter").shocks
    assert len(cfg["shocks"]) == len(base) + 1
    assert cfg["shocks"][-1] == {"month": 2, "kind": "btc", "size": 0.5}


def test_compare_takes_set_and_writes_csv(tmp_path, capsys, monkeypatch):
    from sim.world.runner import compare

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "baseline", "repo_backstop", "--seeds", "2", "--months", "3",
                 "--set", "lenders.count=8", "--csv", "cmp.csv"]) == 0
    assert "table written to cmp.csv" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "cmp.csv").open()))
    ref = compare(load_scenario("baseline", ["lenders.count=8"], months=3),
                  load_scenario("repo_backstop", ["lenders.count=8"], months=3), 2)
    assert [r["metric"] for r in rows] == list(ref["metrics"])
    cl = rows[0]
    assert (cl["unit"], cl["a"], cl["b"], cl["seeds"]) == ("USD", "baseline",
                                                           "repo_backstop", "2")
    assert float(cl["diff_b_minus_a"]) == ref["metrics"]["credit_losses"]["diff"]


@pytest.mark.slow
def test_seed_and_months_show_their_defaults():
    r = _cli(["run", "--help"], REPO)
    text = " ".join(r.stdout.split())
    assert "default: the scenario's; 20251201 in the shipped ones" in text
    assert "default: the scenario's; 60 in the shipped ones" in text
    assert "shocks+=" in text


def test_negative_money_has_the_sign_before_the_dollar():
    assert _fmt_money(-17.4e6) == "\u2212$17.4 M"
    assert _fmt_money(17.4e6) == "$17.4 M"
    assert _fmt_money(-1.0) == "$0.0 M"  # no minus on a rounded zero


@pytest.mark.slow
def test_progress_lines_without_a_tty(tmp_path):
    r = _cli(["run", "baseline", "--months", "4", "--no-figures", "--out", "o"], tmp_path,
             LIQSIM_PROGRESS_SECONDS="0")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1].startswith("liqsim: baseline: 4/4 months (100 %), ")
    assert "liqsim: baseline: 1/4 months (25 %), " in r.stderr
    quiet = _cli(["run", "baseline", "--months", "2", "--no-figures", "--out", "q"], tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""  # shorter than 10 s: no line at all
    spec = REPO / "experiments" / "sweeps" / "tiny.toml"
    r = _cli(["sweep", str(spec), "--workers", "1", "--out", "sw"], tmp_path,
             LIQSIM_PROGRESS_SECONDS="0")
    assert r.returncode == 0, r.stderr
    assert "liqsim: sweep tiny: 12/12 runs (100 %), " in r.stderr
    assert "liqsim: sweep tiny: 6/12 runs (50 %), " in r.stderr


# 800 runs: long enough (several seconds on 2 workers with the compiled engine, issue 19)
# that a signal sent 0.7-1.2 s after the start, or after the first run, finds it running
BIG = """name = "big"
base = "crypto_winter"
months = 24
replicates = 400
root_seed = 1
design = "grid"
metrics = ["credit_losses"]

[[axes]]
key = "policy.repo.enabled"
values = [false, true]
"""


def _start_sweep(tmp_path: Path) -> subprocess.Popen:
    (tmp_path / "big.toml").write_text(BIG)
    # SIGINT's default in the child, whatever this process inherited: a shell that starts the
    # test suite in the background (`make test &`) makes SIGINT ignored, and children inherit
    # an ignored signal, so Ctrl-C would then never reach the sweep
    return subprocess.Popen([LIQSIM, "sweep", "big.toml", "--workers", "2", "--out", "s"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            env={**os.environ, "LIQSIM_PROGRESS_SECONDS": "0"})


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.7, 1.2, "first-run"])
def test_ctrl_c_of_a_sweep_exits_cleanly(tmp_path, delay):
    """SIGINT to the whole process group (what `timeout -s INT` and a terminal send), while
    the command loads, while the fork server loads, and once runs are finishing. (The first
    ~0.1 s, while the interpreter itself starts, is before any handler can be installed.)"""
    p = _start_sweep(tmp_path)
    if delay == "first-run":
        line = p.stderr.readline()
        assert line.startswith("liqsim: sweep big: "), line
    else:
        time.sleep(delay)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [ln for ln in err.splitlines() if not ln.startswith("liqsim: sweep big")][-1] \
        .startswith("liqsim: interrupted")


@pytest.mark.slow
def test_sigterm_of_a_sweep_releases_the_lock(tmp_path):
    from sim.batch.sweep import SweepLock

    p = _start_sweep(tmp_path)
    assert p.stderr.readline().startswith("liqsim: sweep big: ")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "Traceback" not in err
    assert "liqsim: stopped; terminated; every finished run is in the ledger" in err
    SweepLock(tmp_path / "s").release()  # free at once: no worker kept it
    deadline, left = time.monotonic() + 10, ["?"]
    while left and time.monotonic() < deadline:  # the fork server notices within a moment
        time.sleep(0.2)
        left = subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True,
                              check=False).stdout.split()
    assert left == []  # no process of the sweep's session outlives it


def test_sweep_refuses_a_single_runs_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "baseline", "--months", "2", "--no-figures", "--out", "r"]) == 0
    manifest = (tmp_path / "r" / "manifest.json").read_bytes()
    capsys.readouterr()
    spec = REPO / "experiments" / "sweeps" / "tiny.toml"
    assert main(["sweep", str(spec), "--workers", "1", "--out", "r"]) == 2
    err = capsys.readouterr().err
    assert "--out r: holds a single run's outputs (summary.json, written by liqsim run)" in err
    assert (tmp_path / "r" / "manifest.json").read_bytes() == manifest
    assert not (tmp_path / "r" / "ledger.sqlite").exists()
