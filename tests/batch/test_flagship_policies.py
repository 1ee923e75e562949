"""experiments/flagship.py's policy table and key figure (the README's numbers come from them),
on three small copies of the policy sweeps: the same specs with 2 seeds, 4 months and two
shock sizes, run for real."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.batch.analyze import load
from sim.batch.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import flagship  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    for stem in flagship.POLICIES:
        text = (ROOT / "experiments" / "sweeps" / f"{stem}.toml").read_text()
        text = text.replace("replicates = 20", "replicates = 2\nmonths = 4")
        text = text.replace("values = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]",
                            "values = [0.0, 0.8]")
        spec = raw / f"{stem}.toml"
        spec.write_text(text)
        res = run_sweep(spec, out=raw / stem, workers=1)
        assert res.failed == 0 and res.total == 8
    return raw


def test_policy_table_pairs_each_policy_with_none_by_hand(raw, tmp_path):
    assert flagship.policy_results(tmp_path / "missing", tmp_path) == []  # no ledgers, no files
    names = flagship.policy_results(raw, tmp_path)
    assert names == ["paired_policy_losses.csv", "key_figure.png"]
    png = (tmp_path / "policies" / "key_figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    t = pd.read_csv(tmp_path / "policies" / "paired_policy_losses.csv")
    assert set(t["policy"]) == {"secured repo", "buyer of last resort", "legacy desk"}
    assert set(t["shock"]) == {0.0, 0.8} and (t["n"] == 2).all()
    own = t[t["party"] == "the policy itself"].set_index("policy")["metric"]
    assert own.loc["buyer of last resort"].unique().tolist() == ["losses.lolr"]
    assert own.loc["secured repo"].unique().tolist() == ["losses.desk"]
    # by hand from the ledger: mean over the seeds of (policy on - off) at the same seed
    for stem, (axis, label, _own, _colour) in flagship.POLICIES.items():
        runs = load(raw / stem).runs
        at = runs[runs["shocks.0.size"] == 0.8].set_index(["seed", axis])["losses.system_loss"]
        seeds = sorted({s for s, _ in at.index})
        hand = np.mean([at[(s, True)] - at[(s, False)] for s in seeds])
        row = t[(t["policy"] == label) & (t["shock"] == 0.8) & (t["party"] == "system loss")]
        assert row["mean"].item() == pytest.approx(hand, rel=1e-12, abs=1e-6)
        assert row["mean_none"].item() == pytest.approx(
            np.mean([at[(s, False)] for s in seeds]), rel=1e-12)
