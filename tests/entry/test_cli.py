"""Tests for the ``liqsim`` command line: bad input gives exit code 2 and one clear line.

Every invalid config or flag must give exit code 2 and exactly one line on stderr, starting
``liqsim: error:`` and naming the problem, never a traceback. The table runs in-process through
``sim.cli.main(argv)``; two tests go through a real subprocess; the last ones check that
``--set`` overrides really change the scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from sim.cli import main
from sim.core.config import SCENARIO_DIR, Scenario, load_scenario

REPO = Path(__file__).resolve().parents[2]

GEN = """
[[environment.generations]]
name = "{name}"
launch_month = -12
list_price = 30000
kw_per_gpu = 1.3
rent0 = 2.6
"""


def write_file(tmp: Path, name: str, text: str | bytes) -> str:
    p = tmp / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return str(p)


def _edgelist(tmp: Path, text: str) -> list[str]:
    return ["run", "--no-figures", "--out", str(tmp / "out"), "--set", "network.kind=edgelist",
            "--set", f"network.edgelist={write_file(tmp, 'edges.txt', text)}"]


# Each case: (id, argv builder taking tmp_path, fragments the one error line must contain).
CASES = [
    ("unknown-scenario-name", lambda t: ["run", "no_such_scenario"],
     ["scenario 'no_such_scenario' not found", "baseline"]),
    ("missing-file", lambda t: ["run", str(t / "missing.toml")], ["missing.toml", "not found"]),
    ("malformed-toml", lambda t: ["run", write_file(t, "bad.toml", "months = \n[x\n")],
     ["bad.toml", "malformed TOML", "line 1"]),
    ("malformed-toml-multiline-string",
     lambda t: ["run", write_file(t, "bad2.toml", 'description = """never closed\nmore\n')],
     ["bad2.toml", "malformed TOML"]),
    ("unknown-top-level-key-toml", lambda t: ["run", write_file(t, "extra.toml", "bogus = 1\n")],
     ["unknown key 'bogus'"]),
    ("unknown-top-level-key-set", lambda t: ["run", "--set", "bogus=1"], ["unknown key 'bogus'"]),
    ("unknown-nested-key", lambda t: ["run", "--set", "lenders.bogus=1"],
     ["unknown key 'lenders.bogus'"]),
    ("unknown-intermediate-key", lambda t: ["run", "--set", "lenders.bogus.x=1"],
     ["unknown key 'lenders.bogus'"]),
    ("key-below-a-number", lambda t: ["run", "--set", "months.x=1"], ["unknown key 'months.x'"]),
    ("wrong-type-months", lambda t: ["run", "--set", "months=abc"],
     ["months = 'abc'", "valid integer"]),
    ("wrong-type-float-for-int", lambda t: ["run", "--set", "lenders.count=7.5"],
     ["lenders.count = 7.5", "integer"]),
    ("wrong-type-section", lambda t: ["run", "--set", "lenders=5"],
     ["lenders = 5", "dictionary"]),
    ("months-zero-flag", lambda t: ["run", "--months", "0"],
     ["months = 0", "greater than or equal to 1"]),
    ("months-negative-set", lambda t: ["run", "--set", "months=-5"],
     ["months = -5", "greater than or equal to 1"]),
    ("months-too-large", lambda t: ["run", "--months", "100000"],
     ["months = 100000", "less than or equal to 600"]),
    ("negative-price", lambda t: ["run", "--set", "environment.btc_price0=-1"],
     ["environment.btc_price0 = -1", "greater than or equal to 1"]),
    ("ltv-above-one", lambda t: ["run", "--set", "borrowers.miner.ltv=1.5"],
     ["borrowers.miner.ltv = 1.5", "less than or equal to 1"]),
    ("rho-above-one", lambda t: ["run", "--set", "environment.rho_calm=1.5"],
     ["environment.rho_calm = 1.5", "less than or equal to 1"]),
    ("probability-negative", lambda t: ["run", "--set", "borrowers.neocloud.guarantee_prob=-0.1"],
     ["borrowers.neocloud.guarantee_prob = -0.1", "greater than or equal to 0"]),
    ("haircut-above-one", lambda t: ["run", "--set", "policy.repo.h0=2"],
     ["policy.repo.h0 = 2", "less than or equal to 1"]),
    ("nan-value", lambda t: ["run", "--set", "environment.rent_deflation=nan"],
     ["environment.rent_deflation = nan", "finite number"]),
    ("inf-value", lambda t: ["run", "--set", "environment.btc_price0=inf"],
     ["environment.btc_price0 = inf", "finite number"]),
    ("set-without-equals", lambda t: ["run", "--set", "lenders.count"],
     ["--set 'lenders.count'", "key=value"]),
    ("set-empty-key", lambda t: ["run", "--set", "=5"], ["--set '=5'", "key=value"]),
    ("set-empty-path-part", lambda t: ["run", "--set", "lenders..count=5"],
     ["--set 'lenders..count=5'", "key=value"]),
    ("list-index-out-of-range", lambda t: ["run", "--set", "environment.generations.9.rent0=1"],
     ["environment.generations.9", "0..4"]),
    ("list-index-not-a-number", lambda t: ["run", "--set", "environment.generations.x.rent0=1"],
     ["environment.generations.x", "0..4"]),
    ("index-into-empty-list", lambda t: ["run", "--set", "shocks.0.month=1"],
     ["shocks.0", "empty"]),
    ("bad-enum-market-mode", lambda t: ["run", "--set", "market.mode=magic"],
     ["market.mode = 'magic'", "'auction' or 'parametric'"]),
    ("bad-enum-network-kind", lambda t: ["run", "--set", "network.kind=ring"],
     ["network.kind = 'ring'", "erdos_renyi"]),
    ("bad-enum-lender-mark", lambda t: ["run", "--set", "lenders.types.bank.mark=guess"],
     ["lenders.types.bank.mark = 'guess'", "'book'"]),
    ("ltv-cure-above-ltv-max", lambda t: ["run", "--set", "lenders.ltv_cure=0.9"],
     ["lenders.ltv_cure = 0.9", "lenders.ltv_max = 0.85"]),
    ("duplicate-generation-names",
     lambda t: ["run", write_file(t, "dup.toml",
                                  GEN.format(name="H100") + GEN.format(name="H100"))],
     ["environment.generations", "duplicate names"]),
    ("fleet-mix-too-many-weights",
     lambda t: ["run", "--set", "borrowers.miner.fleet_mix=[1, 1, 1, 1, 1, 1]"],
     ["borrowers.miner.fleet_mix", "at most 5 weights"]),
    ("fleet-mix-zero-sum", lambda t: ["run", "--set", "borrowers.neocloud.fleet_mix=[0, 0]"],
     ["borrowers.neocloud.fleet_mix", "positive sum"]),
    ("empty-generations", lambda t: ["run", "--set", "environment.generations=[]"],
     ["environment.generations = []", "at least 1 item"]),
    ("bad-shock-kind",
     lambda t: ["run", write_file(t, "shock.toml", "[[shocks]]\nmonth = 3\nkind = 'meteor'\n"
                                               "size = 0.5\n")],
     ["shocks.0.kind = 'meteor'", "'btc'"]),
    ("bad-scenario-name", lambda t: ["run", "--set", "name='a b'"], ["name = 'a b'", "pattern"]),
    ("edgelist-without-path", lambda t: ["run", "--set", "network.kind=edgelist"],
     ["network.edgelist", "path is required"]),
    ("edgelist-file-missing",
     lambda t: ["run", "--no-figures", "--out", str(t / "out"), "--set", "network.kind=edgelist",
                "--set", f"network.edgelist={t / 'nope.txt'}"],
     ["network.edgelist", "nope.txt", "not found"]),
    ("edgelist-unknown-node", lambda t: _edgelist(t, "0 1 1.0\n3 25 2.0\n"),
     ["network.edgelist line 2", "unknown node 25", "0..19"]),
    ("edgelist-self-loop", lambda t: _edgelist(t, "4 4\n"),
     ["network.edgelist line 1", "self-loop on lender 4"]),
    ("edgelist-negative-weight", lambda t: _edgelist(t, "# creditor debtor weight\n1 2 -3\n"),
     ["network.edgelist line 2", "weight -3.0", "must be a number in [0, 1e+15]"]),
    ("edgelist-not-numbers", lambda t: _edgelist(t, "a b\n"),
     ["network.edgelist line 1", "not numbers"]),
    ("unknown-cli-option", lambda t: ["run", "--bogus"], ["--bogus"]),
    ("unknown-command", lambda t: ["frobnicate"], ["frobnicate"]),
    ("option-missing-value", lambda t: ["run", "--months"], ["--months", "requires an argument"]),
    ("non-integer-seed", lambda t: ["run", "--seed", "x"], ["--seed", "'x' is not an integer"]),
    ("negative-seed", lambda t: ["run", "--seed", "-1"],
     ["seed = -1", "greater than or equal to 0"]),
    ("out-is-a-file",
     lambda t: ["run", "--no-figures", "--out", write_file(t, "occupied", "x")],
     ["--out", "occupied", "not a directory"]),
    ("out-below-a-file",
     lambda t: ["run", "--no-figures", "--out", write_file(t, "occupied2", "x") + "/sub"],
     ["--out", "occupied2", "not a directory"]),
    ("compare-one-seed", lambda t: ["compare", "baseline", "repo_backstop", "--seeds", "1"],
     ["--seeds", "1 is not in the range 2..100000"]),
    ("compare-missing-scenario", lambda t: ["compare", "baseline", "no_such_scenario"],
     ["scenario 'no_such_scenario' not found"]),
    ("compare-bad-months", lambda t: ["compare", "baseline", "repo_backstop", "--months", "0"],
     ["months = 0"]),
    ("compare-edgelist-missing",
     lambda t: ["compare", "baseline",
                write_file(t, "el.toml",
                       f"[network]\nkind = 'edgelist'\nedgelist = '{t / 'no.txt'}'\n"),
                "--seeds", "2", "--months", "1"],
     ["network.edgelist", "no.txt", "not found"]),
    ("empty-scenario-name", lambda t: ["run", ""], ["scenario ''", "empty name"]),
    ("missing-required-key",
     lambda t: ["run", write_file(t, "fund.toml", "[lenders.types.fund]\nshare = 0.1\n")],
     ["missing key 'lenders.types.fund.capital_ratio'"]),
    ("toml-nested-too-deeply",
     lambda t: ["run", write_file(t, "deep.toml", "x = " + "[" * 3000 + "]" * 3000 + "\n")],
     ["deep.toml", "malformed TOML"]),
    ("non-integer-months", lambda t: ["run", "--months", "1.5"],
     ["--months", "'1.5' is not an integer"]),
    ("seed-too-large", lambda t: ["run", "--seed", str(2**64)],
     [f"seed = {2**64}", "less than or equal to"]),
    ("extra-argument", lambda t: ["run", "baseline", "crypto_winter"], ["crypto_winter"]),
    ("compare-non-integer-seeds", lambda t: ["compare", "baseline", "baseline", "--seeds", "x"],
     ["--seeds", "'x' is not an integer"]),
    ("compare-missing-argument", lambda t: ["compare", "baseline"], ["Missing argument"]),
    ("edgelist-is-a-directory",
     lambda t: ["run", "--no-figures", "--out", str(t / "out"), "--set", "network.kind=edgelist",
                "--set", f"network.edgelist={t}"],
     ["network.edgelist", "is a directory, not a regular file"]),
    ("scenario-is-a-directory", lambda t: ["run", str(t)], ["is a directory"]),
    ("non-utf8-file",
     lambda t: ["run", write_file(t, "latin1.toml", b"description = '\xe9t\xe9'\n")],
     ["latin1.toml", "UTF-8"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("build_argv", "fragments"), [pytest.param(b, f, id=i)
                                                       for i, b, f in CASES])
def test_bad_input_is_one_line_and_exit_2(build_argv, fragments, tmp_path, capsys,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the repo's results/ by accident
    code = main(build_argv(tmp_path))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("liqsim: error: ") and line.strip() != "liqsim: error:", line
    for frag in fragments:
        assert frag in line, f"{frag!r} not in {line!r}"
    assert not (tmp_path / "out" / "summary.json").exists()


def test_table_is_large_enough():
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- real subprocess
def _liqsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("liqsim")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "sim.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_console_bad_input_exit_2_no_traceback(tmp_path):
    for args in (["run", "--set", "borrowers.miner.ltv=1.5"], ["run", "--bogus"]):
        res = _liqsim(*args, cwd=tmp_path)
        assert res.returncode == 2, res
        assert "Traceback" not in res.stderr
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("liqsim: error:"), res.stderr
    res = subprocess.run([sys.executable, "-m", "sim.cli", "run", "--months", "0"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == ["liqsim: error: months = 0: Input should be greater "
                                       "than or equal to 1"]


SUMMARY_KEYS = {"credit_losses", "defaults_by_type", "lender_failures", "peak_price_fall",
                "fire_sale_discount", "realised_lgd", "paper_lgd", "salvage_units", "debtrank",
                "seed", "liqsim_version"}


@pytest.mark.slow
def test_console_short_run_writes_summary(tmp_path):
    out = tmp_path / "run"
    res = _liqsim("run", "--months", "3", "--no-figures", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys(), SUMMARY_KEYS - summary.keys()
    assert summary["seed"] == Scenario().seed
    assert summary["months"] == 3


# --------------------------------------------------------------------------- overrides
def test_set_overrides_change_the_config():
    cfg = load_scenario(None, ["lenders.count=7", "policy.repo.enabled=true",
                               "environment.generations.1.rent0=3.5"])
    assert cfg.lenders.count == 7 and isinstance(cfg.lenders.count, int)
    assert cfg.policy.repo.enabled is True
    assert cfg.environment.generations[1].rent0 == 3.5
    assert cfg.environment.generations[1].name == "H100"

    expected = Scenario().model_dump()
    expected.update(tomllib.loads((SCENARIO_DIR / "baseline.toml").read_text()))
    expected["lenders"]["count"] = 7
    expected["policy"]["repo"]["enabled"] = True
    expected["environment"]["generations"][1]["rent0"] = 3.5
    assert cfg.model_dump() == expected


def test_baseline_is_defaults_plus_baseline_toml():
    base = tomllib.loads((SCENARIO_DIR / "baseline.toml").read_text())
    assert all(not isinstance(v, dict | list) for v in base.values())  # only top-level scalars
    assert load_scenario(None) == Scenario(**base)
    assert load_scenario("baseline") == load_scenario(None)


def test_seed_and_months_flags_override():
    cfg = load_scenario("crypto_winter", ["months=12"], seed=5, months=7)
    assert (cfg.seed, cfg.months, cfg.name) == (5, 7, "crypto_winter")
    assert [s.kind for s in cfg.shocks] == ["btc", "rent", "buyer_capital"]


def test_set_string_and_list_values():
    cfg = load_scenario(None, ["market.mode=parametric", "name=my_run",
                               "borrowers.miner.fleet_mix=[1, 0, 0, 0]"])
    assert cfg.market.mode == "parametric" and cfg.name == "my_run"
    assert cfg.borrowers.miner.fleet_mix == [1, 0, 0, 0]


def test_compare_prints_paired_differences(capsys):
    assert main(["compare", "crypto_winter", "repo_backstop", "--seeds", "2",
                 "--months", "6"]) == 0
    out = capsys.readouterr().out
    for key in ("credit losses", "defaults", "lender failures", "max peak price fall", "95 % CI"):
        assert key in out


@pytest.mark.slow
def test_run_prints_every_partys_loss_and_the_policys_pnl(tmp_path):
    """The summary table shows the losses counted for everyone, read from summary.json."""
    from sim.cli import _summary_table

    out = tmp_path / "r"
    assert main(["run", "crypto_winter", "--months", "12", "--set", "policy.lolr.enabled=true",
                 "--set", "policy.repo.enabled=true", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    rows = dict(zip(*(c._cells for c in _summary_table(s).columns), strict=True))
    L = s["losses"]
    assert rows["system loss, all parties (GPUs at price / at value in best use)"] == (
        f"{_money(L['system_loss'])} / {_money(L['system_loss_at_value'])}")
    assert rows["repo desk's P&L (after its cost of capital)"] == _money(-L["desk"])
    assert rows["buyer of last resort's P&L (after its cost of capital)"] == _money(-L["lolr"])
    assert L["lolr"] != 0.0  # the buyer of last resort did something
    off = dict(zip(*(c._cells for c in _summary_table(
        {**s, "repo_enabled": False, "losses": {**L, "desk": 0.0, "lolr": 0.0}}).columns),
        strict=True))
    assert not any("P&L" in k for k in off)  # no policy, no P&L row


def _money(x: float) -> str:
    """$ millions as the table prints them, a minus sign for a negative amount (by hand)."""
    text = f"${abs(x) / 1e6:,.1f} M"
    return f"\u2212{text}" if x < 0 and text != "$0.0 M" else text


@pytest.mark.slow
def test_run_writes_every_output_readable_by_others(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--months", "4", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "summary.json", "series.parquet", "panel.parquet",
            "events.parquet", "network.graphml", "price_vs_fundamental.png"} <= names
    assert not any(n.endswith(".tmp") for n in names)  # atomic writes leave no temporaries
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "summary.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_edgelist_defines_the_funding_network(tmp_path):
    """Lender 0 funds lender 1 (weight 2) and lender 2 (weight 1); lender 1 funds lender 0."""
    from sim.world.model import LiquidationModel

    path = write_file(tmp_path, "el.txt", "# creditor debtor weight\n0 1 2\n0 2 1\n1 0\n")
    cfg = load_scenario(None, ["lenders.count=3", "network.kind='edgelist'",
                               f"network.edgelist='{path}'"], months=1)
    m = LiquidationModel(cfg)
    owes = m.interbank > 0  # owes[i, j]: i owes j
    np.testing.assert_array_equal(owes, [[False, True, False],
                                         [True, False, False],
                                         [True, False, False]])
