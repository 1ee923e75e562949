"""The Python and Mesa API: ``import sim``, ``sim.run``, ``LiquidationModel``'s arguments,
``model.datacollector`` and ``mesa.batch_run``, the ``agents`` name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mesa
import numpy as np
import pandas as pd
import pytest

import sim
from sim.core.config import ConfigError, Scenario, load_scenario
from sim.core.version import liqsim_version
from sim.world import metrics
from sim.world.model import LiquidationModel
from sim.world.runner import run_scenario

REPO = Path(__file__).resolve().parents[2]


def _py(code: str, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "NPY_DISABLE_CPU_FEATURES": "AVX512_ICL X86_V4"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.slow
def test_import_sim_gives_the_public_api_lazily(tmp_path):
    code = ("import sys, sim; print(json.dumps([sorted(sim.__all__), "
            "'sim.world.model' in sys.modules,"
            " sim.__version__, sim.LiquidationModel.__module__, sim.run.__module__]))")
    r = _py("import json; " + code, tmp_path)
    assert r.returncode == 0, r.stderr
    names, model_loaded, version, mod, run_mod = json.loads(r.stdout)
    assert names == ["ConfigError", "LiquidationModel", "RunResult", "Scenario", "__version__",
                     "load_scenario", "run", "summary"]
    assert model_loaded is False  # `import sim` alone loads neither mesa nor the model
    assert version == liqsim_version()
    assert (mod, run_mod) == ("sim.world.model", "sim.api")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sim.nope  # noqa: B018


@pytest.mark.slow
def test_run_returns_summary_series_and_events():
    res = sim.run("crypto_winter", seed=7, overrides={"policy.repo.enabled": True}, months=24)
    ref = run_scenario(load_scenario("crypto_winter", ["policy.repo.enabled=true"], seed=7,
                                     months=24))
    assert res.summary == metrics.summary(ref)
    assert (res.summary["seed"], res.summary["months"], res.summary["repo_enabled"]) == (
        7, 24, True)
    assert isinstance(res.series, pd.DataFrame) and isinstance(res.events, pd.DataFrame)
    assert len(res.series) == 25 and res.series["month"].tolist() == list(range(25))
    pd.testing.assert_frame_equal(res.series, metrics.series(ref))
    pd.testing.assert_frame_equal(res.events, metrics.events(ref))
    assert res.config.seed == 7 and res.model.month == 24


def test_model_takes_a_name_a_path_or_a_scenario():
    by_name = LiquidationModel("crypto_winter", months=3).run()
    path = REPO / "experiments" / "scenarios" / "crypto_winter.toml"
    by_path = LiquidationModel(path, months=3).run()
    by_cfg = LiquidationModel(load_scenario("crypto_winter", months=3)).run()
    assert by_name.cfg.name == by_path.cfg.name == "crypto_winter"
    for m in (by_path, by_cfg):
        np.testing.assert_array_equal(m.rec["credit_losses"], by_name.rec["credit_losses"])
    assert LiquidationModel().cfg == Scenario()  # no argument: the defaults, as before
    with pytest.raises(ConfigError, match="scenario 'no_such' not found"):
        LiquidationModel("no_such")
    with pytest.raises(ConfigError, match="expected a shipped name, a TOML path or a Scenario"):
        LiquidationModel(3.5)


def test_the_recorded_seed_is_the_seed_used():
    m = LiquidationModel(rng=7, months=4).run()
    ref = LiquidationModel(Scenario(seed=7, months=4)).run()
    assert metrics.summary(m)["seed"] == 7 and m.cfg.seed == 7
    np.testing.assert_array_equal(m.rec["btc"], ref.rec["btc"])
    assert metrics.summary(LiquidationModel(seed=9, months=1).run())["seed"] == 9
    assert LiquidationModel(months=1).cfg.seed == 20251201  # None: the scenario's seed
    assert LiquidationModel(rng=np.int64(5), months=1).cfg.seed == 5
    with pytest.raises(ConfigError, match="rng = 7 and seed = 8: pass one seed"):
        LiquidationModel(rng=7, seed=8)
    with pytest.raises(ConfigError, match="expected an integer seed"):
        LiquidationModel(rng=np.random.default_rng(1))
    with pytest.raises(ConfigError, match="expected an integer seed"):
        LiquidationModel(rng=True)


def test_overrides_with_typed_values():
    m = LiquidationModel("crypto_winter", months=2,
                         **{"policy.repo.enabled": True, "lenders.count": 12})
    assert m.cfg.policy.repo.enabled is True and m.cfg.lenders.count == 12
    m = LiquidationModel("crypto_winter", months=2, policy__repo__h0=0.3,
                         overrides={"buyers.capacity_scale": 2})
    assert m.cfg.policy.repo.h0 == 0.3 and m.cfg.buyers.capacity_scale == 2.0
    # Python's spelling of booleans works in override strings too
    assert load_scenario("baseline", ["policy.repo.enabled=True"]).policy.repo.enabled is True
    assert load_scenario("baseline", "policy.repo.enabled=False").policy.repo.enabled is False
    with pytest.raises(ConfigError, match="policy.repo.enabled = 'yes'"):
        load_scenario("baseline", {"policy.repo.enabled": "yes"})
    with pytest.raises(ConfigError, match=r"unknown key 'lenders.cont' \(did you mean "
                                          r"'lenders.count'\?\)"):
        LiquidationModel(**{"lenders.cont": 3})
    with pytest.raises(ConfigError, match="give them as a mapping"):
        LiquidationModel(overrides=["lenders.count=3"], lenders__count=4)


def test_datacollector_reads_the_records():
    m = LiquidationModel("crypto_winter", months=6).run()
    dc = m.datacollector
    mv = dc.get_model_vars_dataframe()
    pd.testing.assert_frame_equal(mv, metrics.series(m).set_index("month"))
    assert list(mv.index) == list(range(7)) and "price_H100" in mv.columns
    av = dc.get_agent_vars_dataframe()
    n_agents = len(m.panel_agents)
    assert av.index.names == ["Step", "AgentID"] and len(av) == 7 * n_agents
    assert av.loc[(6, 0), "cash"] == m.panel["cash"][6, 0]
    assert list(av.columns[:3]) == ["state", "cash", "size"]
    assert dc.model_vars["credit_losses"] == m.rec["credit_losses"].tolist()
    assert dc._collection_steps == list(range(7))
    assert dc._agent_records[6][0] == (6, 0, int(m.panel["state"][6, 0]),
                                       m.panel["cash"][6, 0], m.panel["size"][6, 0])
    events = dc.get_table_dataframe("events")
    assert len(events) == len(m.events)
    with pytest.raises(ValueError, match="the only table is 'events'"):
        dc.get_table_dataframe("trades")
    # mid-run it shows the months so far
    m2 = LiquidationModel("crypto_winter", months=6)
    m2.step()
    assert len(m2.datacollector.get_model_vars_dataframe()) == 2


def test_datacollector_costs_nothing_per_step(monkeypatch):
    """Nothing builds the collector while the model runs: it is made only when read."""
    from sim.world import collect

    def refuse(self, model):
        raise AssertionError("datacollector built during the run")

    monkeypatch.setattr(collect.RecordsCollector, "__init__", refuse)
    m = LiquidationModel("crypto_winter", months=12).run()
    assert m.month == 12


def test_mesa_batch_run():
    rows = mesa.batch_run(LiquidationModel, parameters={
        "scenario": "crypto_winter", "months": 4, "policy.repo.enabled": [False, True]},
        rng=[1, 2], display_progress=False, number_processes=1)
    df = pd.DataFrame(rows)
    last = df.drop_duplicates("RunId").set_index("RunId")
    assert len(last) == 4 and set(last["Step"]) == {4}
    assert last["seed"].tolist() == [1, 1, 2, 2]
    assert last["policy.repo.enabled"].tolist() == [False, True, False, True]
    for run_id, row in last.iterrows():
        ref = run_scenario(load_scenario("crypto_winter", {"policy.repo.enabled": bool(
            row["policy.repo.enabled"])}, seed=int(row["seed"]), months=4))
        assert row["credit_losses"] == ref.rec["credit_losses"][4], run_id
    n_agents = len(LiquidationModel("crypto_winter", months=1).panel_agents)
    assert len(df) == 4 * n_agents  # one row per agent at the last month


@pytest.mark.slow
def test_import_sim_binds_liqsims_agents_before_another_package(tmp_path):
    """Another package named ``agents`` earlier on the path (openai-agents installs one) does
    not take liqsim's imports; one already imported is refused with a clear message."""
    other = tmp_path / "site" / "agents"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("OTHER = True\n")
    code = ("import sim, agents, sys; r = sim.run(months=2); "
            "print(agents.__file__, r.summary['months'], sys.modules['agents.borrower'].__file__)")
    r = _py(code, tmp_path, str(other.parent))
    assert r.returncode == 0, r.stderr
    init, months, borrower = r.stdout.split()
    assert Path(init) == REPO / "agents" / "__init__.py"
    assert Path(borrower) == REPO / "agents" / "borrower.py" and months == "2"
    r = _py("import agents, sim", tmp_path, str(other.parent))
    assert r.returncode == 1
    assert "another package was already imported as 'agents'" in r.stderr
    assert "import sim before that package" in r.stderr


def test_a_subclass_may_assign_its_own_datacollector():
    from mesa.datacollection import DataCollector

    class Mine(LiquidationModel):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.datacollector = DataCollector(model_reporters={"month": "month"})

    m = Mine(months=1)
    assert isinstance(m.datacollector, DataCollector)
    assert type(LiquidationModel(months=1).datacollector).__name__ == "RecordsCollector"
