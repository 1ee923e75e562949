"""Scenario loading defects found by an adversarial tester (sim/core/config.py).

1. ``true``/``false`` where a number is expected ran as 1/0 (``months = true`` ran one month);
2. a file without ``name`` wrote into ``results/baseline/``;
3. ``name = ".."`` wrote outside the results folder;
4. values near the float limit (1e305) overflowed inside the model, a traceback;
5. an edge list next to a scenario file was looked up in the current directory.

Every bad case asserts the exact single stderr line and exit code 2 through ``sim.cli.main``;
the positive cases check what the fixes must keep working.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import pytest

from sim.cli import main
from sim.core.config import (
    MAX_BUDGET,
    MAX_PRICE,
    NAME_RULE,
    SCENARIO_DIR,
    ConfigError,
    list_scenarios,
    load_scenario,
    safe_name,
)

SMALL = ["--months", "2", "--set", "lenders.count=4", "--set", "borrowers.miner.count=3",
         "--set", "borrowers.neocloud.count=2"]
NAME_ERR = "not a usable name; the pattern is " + NAME_RULE


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def _toml(text: str, name: str = "s.toml"):
    return lambda t: ["run", "--no-figures", "--out", str(t / "out"), _write(t / name, text)]


def _set(*assignments: str, scenario: str = "baseline"):
    argv = ["run", scenario, "--no-figures"]
    for a in assignments:
        argv += ["--set", a]
    return lambda t: [*argv, "--out", str(t / "out")]


SHOCK = '[[shocks]]\nmonth = 3\nkind = "btc"\nsize = true\n'

# (id, argv builder taking tmp_path, the exact stderr line)
CASES = [
    # 1 booleans for numbers: int fields, float fields, list items, TOML and --set
    ("toml-months-true", _toml("months = true\n"), "months: expected a number, got true"),
    ("toml-lender-count-true", _toml("[lenders]\ncount = true\n"),
     "lenders.count: expected a number, got true"),
    ("toml-shock-size-true", _toml(SHOCK), "shocks.0.size: expected a number, got true"),
    ("set-shock-size-true", _set("shocks.0.size=true", scenario="crypto_winter"),
     "shocks.0.size: expected a number, got true"),
    ("set-sofr-true", _set("environment.sofr=true"),
     "environment.sofr: expected a number, got true"),
    ("set-seed-false", _set("seed=false"), "seed: expected a number, got false"),
    ("set-fleet-mix-item-false", _set("borrowers.miner.fleet_mix=[0.5, false]"),
     "borrowers.miner.fleet_mix.1: expected a number, got false"),
    ("set-generation-price-true", _set("environment.generations.2.list_price=true"),
     "environment.generations.2.list_price: expected a number, got true"),
    # ... and numbers for booleans (pydantic's lax mode read 1 as true)
    ("set-repo-enabled-1", _set("policy.repo.enabled=1"),
     "policy.repo.enabled = 1: Input should be a valid boolean"),
    ("toml-unlimited-0", _toml("[buyers]\nunlimited = 0\n"),
     "buyers.unlimited = 0: Input should be a valid boolean"),
    # 3 names that are not one safe path component
    ("name-dotdot", _set("name=.."), f"name = '..': {NAME_ERR}"),
    ("name-dot", _set("name=."), f"name = '.': {NAME_ERR}"),
    ("name-hidden", _set("name=.cache"), f"name = '.cache': {NAME_ERR}"),
    ("name-slash", _set("name='a/b'"), f"name = 'a/b': {NAME_ERR}"),
    ("toml-name-dotdot", _toml('name = ".."\n'), f"name = '..': {NAME_ERR}"),
    ("name-201-chars", _set("name=" + "a" * 201),
     f"name = '{'a' * 116}...: {NAME_ERR}"),
    # 4 finite values so large that the model overflowed
    ("btc-price-1e305", _set("environment.btc_price0=1e305"),
     "environment.btc_price0 = 1e+305: Input should be less than or equal to 1000000000"),
    ("list-price-1e308", _set("environment.generations.0.list_price=1e308"),
     "environment.generations.0.list_price = 1e+308: Input should be less than or equal to "
     "1000000000"),
    ("capital-1e16", _set("buyers.types.tier2.capital=1e16"),
     "buyers.types.tier2.capital = 1e+16: Input should be less than or equal to "
     "1000000000000000"),
    ("funding-spread-1e300", _set("lenders.funding_rate_spread=1e300"),
     "lenders.funding_rate_spread = 1e+300: Input should be less than or equal to 1"),
    ("rent-vol-1e300", _set("environment.rent_vol=1e300"),
     "environment.rent_vol = 1e+300: Input should be less than or equal to 1"),
    ("btc-vol-6", _set("environment.btc_vol_calm=6"),
     "environment.btc_vol_calm = 6: Input should be less than or equal to 5"),
    ("fleet-mix-weight-1e308", _set("borrowers.neocloud.fleet_mix=[1e308, 1e308]"),
     "borrowers.neocloud.fleet_mix.0 = 1e+308: Input should be less than or equal to "
     "1000000"),
    # 5 valid-looking worlds the model could not run (found by fuzzing the model)
    ("no-generation-ships-at-t0", _set(
        "environment.generations=[{name='G', launch_month=1, list_price=3e4, kw_per_gpu=1.0, "
        "rent0=2.0}]", "borrowers.miner.fleet_mix=[1.0]", "borrowers.neocloud.fleet_mix=[1.0]"),
     "environment.generations: at least one generation must have launch_month <= 0 "
     "(borrowers' fleets are GPUs shipping at t0)"),
    ("btc-price-below-the-floor", _set("environment.btc_price0=1e-20"),
     "environment.btc_price0 = 1e-20: Input should be greater than or equal to 1"),
    ("shock-in-month-0", _set("shocks=[{month=0, kind='btc', size=0.5}]"),
     "shocks.0.month = 0: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize("build_argv,line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_exact_line(build_argv, line, tmp_path, capsys):
    assert main(build_argv(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert err == f"liqsim: error: {line}\n"
    assert not (tmp_path / "out").exists()


def test_nameless_file_with_unusable_stem_says_to_add_a_name(tmp_path, capsys):
    path = _write(tmp_path / "my run.toml", "months = 2\n")
    assert main(["run", path, "--no-figures", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"liqsim: error: {path}: the file has no 'name' and its file name 'my run' cannot be "
        f"one ({NAME_RULE}); add a line name = \"...\"\n")


def test_set_edgelist_is_relative_to_the_current_directory(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "el" / "edges.txt", "0 1\n")
    monkeypatch.chdir(tmp_path)
    # the file is beside the scenario, not in the current directory: --set does not look there
    argv = ["run", "--no-figures", "--out", "out", "--set", "network.kind=edgelist",
            "--set", "network.edgelist=edges.txt"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"liqsim: error: network.edgelist: file '{tmp_path / 'edges.txt'}' not found\n")


# --------------------------------------------------------------------------- positive cases
def test_bools_stay_bools_and_ints_become_floats():
    cfg = load_scenario("baseline", ["policy.repo.enabled=true", "environment.sofr=0",
                                     "environment.btc_price0=90000",
                                     "borrowers.miner.fleet_mix=[1, 2, 0, 1]"])
    assert cfg.policy.repo.enabled is True
    assert cfg.environment.sofr == 0.0 and isinstance(cfg.environment.sofr, float)
    assert isinstance(cfg.environment.btc_price0, float)
    assert cfg.borrowers.miner.fleet_mix == [1.0, 2.0, 0.0, 1.0]
    assert load_scenario("baseline", ["environment.btc_random_walk=false"]) \
        .environment.btc_random_walk is False


def test_safe_name_is_the_shared_rule():
    assert safe_name("flagship_repo-v1.2") == "flagship_repo-v1.2"
    assert safe_name("a" * 200) == "a" * 200
    for bad in ("..", ".", ".x", "a b", "a/b", "", "a" * 201, 5):
        with pytest.raises(ConfigError, match="not a usable name"):
            safe_name(bad, "spec name")


@pytest.mark.slow
def test_nameless_file_takes_its_stem_not_baseline(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "w.toml", "[lenders]\ncount = 3\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "w.toml", "--no-figures", *SMALL]) == 0
    written = json.loads((tmp_path / "results" / "w" / "config.json").read_text())
    assert written["name"] == "w" and written["lenders"]["count"] == 4
    assert not (tmp_path / "results" / "baseline").exists()
    capsys.readouterr()
    # compare labels the file by its stem too
    assert main(["compare", "baseline", "w.toml", "--seeds", "2", "--months", "1"]) == 0
    assert "A = baseline, B = w " in " ".join(capsys.readouterr().out.split())


def test_explicit_name_wins_over_the_stem(tmp_path):
    path = _write(tmp_path / "file_stem.toml", 'name = "chosen"\n')
    assert load_scenario(path).name == "chosen"
    assert load_scenario(path, ["name=over.ride"]).name == "over.ride"


@pytest.mark.slow
def test_edgelist_beside_the_file_runs_from_anywhere(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "el" / "edges.txt", "0 1 2.0\n1 2 1.0\n")
    _write(tmp_path / "el" / "s.toml",
           'name = "el"\n[network]\nkind = "edgelist"\nedgelist = "edges.txt"\n')
    monkeypatch.chdir(tmp_path)  # the parent of the scenario's folder
    assert main(["run", "el/s.toml", "--no-figures", *SMALL[2:], "--months", "2"]) == 0
    run_dir = tmp_path / "results" / "el"
    written = json.loads((run_dir / "config.json").read_text())
    assert written["network"]["edgelist"] == str(tmp_path / "el" / "edges.txt")
    # the file's two rows are the whole funding network: lender 0 funds 1, 1 funds 2
    g = nx.read_graphml(run_dir / "network.graphml")
    funding = sorted((g.nodes[u]["name"], g.nodes[v]["name"])
                     for u, v, d in g.edges(data=True) if d["kind"] == "funding")
    assert funding == [("L0", "L1"), ("L1", "L2")]
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["verify", str(run_dir)]) == 0
    assert "reproduced exactly" in capsys.readouterr().out


def test_set_edgelist_is_stored_absolute(tmp_path, monkeypatch):
    _write(tmp_path / "edges.txt", "0 1\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_scenario(None, ["network.kind=edgelist", "network.edgelist=edges.txt"])
    assert cfg.network.edgelist == str(tmp_path / "edges.txt")


@pytest.mark.slow
def test_every_shipped_scenario_and_sweep_spec_still_loads():
    from sim.batch.sweep import SWEEP_DIR, load_spec

    for stem in list_scenarios():
        cfg = load_scenario(stem)
        assert cfg.name == stem  # shipped files name themselves after their file
        assert load_scenario(SCENARIO_DIR / f"{stem}.toml") == cfg
    specs = sorted(SWEEP_DIR.glob("*.toml"))
    assert len(specs) >= 5
    for path in specs:
        assert load_spec(path).name == path.stem


def test_largest_allowed_values_run_with_finite_results(tmp_path):
    out = tmp_path / "out"
    argv = ["run", "crypto_winter", "--no-figures", "--out", str(out), *SMALL,
            "--set", f"environment.btc_price0={MAX_PRICE}",
            "--set", f"environment.generations.0.list_price={MAX_PRICE}",
            "--set", f"buyers.types.tier2.capital={MAX_BUDGET}",
            "--set", "lenders.funding_rate_spread=1.0", "--set", "environment.rent_vol=1.0"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["credit_losses"]) and summary["credit_losses"] >= 0
