"""The benchmark machinery runs on a tiny size and writes valid results (no timing asserts).

Speed targets are checked by ``liqsim bench`` itself (``verdicts`` in bench.json), never by
timed unit tests on a shared machine.
"""

from __future__ import annotations

import json

import pytest

from sim.cli import main
from sim.core.config import load_scenario, read_toml
from sim.qa import bench


def test_scaled_overrides_reach_the_large_scenario():
    """At 100,000 borrowers the scaled baseline has large.toml's counts (read from the file,
    as the configuration may cap the size of one run)."""
    large = read_toml("large")
    scaled = {}
    for o in bench.scaled_overrides(100_000):
        key, _, value = o.partition("=")
        scaled[key] = int(value)
    assert scaled["borrowers.miner.count"] == large["borrowers"]["miner"]["count"] == 66_667
    assert scaled["borrowers.neocloud.count"] == large["borrowers"]["neocloud"]["count"] == 33_333
    assert scaled["lenders.count"] == large["lenders"]["count"] == 1_000
    for name, table in large["buyers"]["types"].items():
        assert scaled[f"buyers.types.{name}.count"] == table["count"]
    assert sum(scaled.values()) == 100_000 + 1_000 + 1_667 + 5_556 + 4_444


def test_scaled_overrides_small_world():
    cfg = load_scenario("baseline", bench.scaled_overrides(100))
    assert cfg.borrowers.miner.count + cfg.borrowers.neocloud.count == 100
    assert cfg.lenders.count == 2
    assert all(t.count >= 1 for t in cfg.buyers.types.values())


def test_fit_exponent_recovers_a_power_law():
    sizes = [1_000, 10_000, 100_000]
    assert bench.fit_exponent(sizes, [2e-3 * n**1.25 for n in sizes]) == pytest.approx(1.25)
    assert bench.fit_exponent([1_000], [1.0]) is None


@pytest.mark.slow
def test_bench_command_writes_json_and_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_SIZES", (100, 300))
    rc = main(["bench", "--quick", "--repeats", "1", "--max-borrowers", "100",
               "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["baseline"]["agents"] == 221 and res["baseline"]["months"] == 60
    assert res["baseline"]["agent_steps_per_s"] == pytest.approx(
        221 * 60 / res["baseline"]["median_s"])
    assert res["boltzmann"]["agents"] == 221
    (point,) = res["scaling"]["points"]  # one fresh subprocess, 12 months
    assert point["borrowers"] == 100 and point["months"] == 12 and point["agents"] > 100
    assert point["wall_s"] == pytest.approx(point["build_s"] + point["steps_s"])
    assert point["peak_rss_mb"] > 10
    assert res["outputs_identical"]["mismatches"] == []
    assert res["verdicts"]["outputs_identical"] is True
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "agent-steps/s" in capsys.readouterr().out


def test_bench_refuses_an_unwritable_out(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["bench", "--quick", "--out", str(target)]) == 2
    assert capsys.readouterr().err.startswith("liqsim: error: --out")
