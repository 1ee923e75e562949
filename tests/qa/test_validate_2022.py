"""Check 5 re-specified (the 2022 rig episode): 5a against each rig class's sourced fall, 5b as
the collateral's market value at repossession over the exposure at default, 5d the isolating
counterfactual "no lender solvent at t0 fails from its rig book alone". Worked examples."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sim.qa import validate as val
from sim.qa.checks import asic_2022, common

TYPES = ("bank", "private_credit", "abl", "crypto_lender")
RIG_ONLY = tuple(f"lenders.types.{t}.gpu_share=1.0" for t in TYPES)


def _episode(**over) -> dict:
    """A hand-built asic_episode result (what asic_rows reads)."""
    a = {"falls": {"S19": 0.87}, "btc_fall": 0.77, "hashprice_fall": 0.836, "defaults": 20,
         "auction_price_fall": 0.9, "invariants": [], "collateral_at_index": 0.55,
         "lender_failures": 0, "lenders": 20, "repossessed_units": 15, "lender_sales": [],
         "unsold_units": 15, "distressed_discount": 0.5, "recovery": 0.10}
    a.update(over)
    return a


def _row(rows, cid):
    (r,) = [r for r in rows if r.id == cid]
    return r


# ---------------------------------------------------------------- 5b: value at repossession
def test_collateral_at_repossession_by_hand():
    """10 rigs taken in month 2 (index 80) and 5 in month 3 (index 60) against an exposure at
    default of 2,000: (10 x 80 + 5 x 60) / 2,000 = 1,100 / 2,000 = 55 %. A lender sale and a
    salvage purchase in month 3 do not enter it (they are the realised proceeds)."""
    events = [(2, "repossession", "lender", 0, 0, 10, 0.0, 0.0),
              (3, "repossession", "lender", 1, 0, 5, 0.0, 0.0),
              (3, "sale", "lender", 0, 0, 4, 220.0, 55.0),
              (3, "purchase", "salvage", -1, 0, 1, 55.0, 55.0)]
    m = SimpleNamespace(events=events, ead_total=2000.0,
                        lenders=SimpleNamespace(inventory=np.array([[6], [5]])))
    got = asic_2022.recovery_paths(m, np.array([100.0, 90.0, 80.0, 60.0]))
    assert got["collateral_at_index"] == pytest.approx(0.55, abs=1e-15)
    assert got["repossessed_units"] == 15 and got["unsold_units"] == 11
    assert got["lender_sales"] == [{"month": 3, "units": 4, "price": 55.0, "to_salvage": 1}]


def test_5b_checks_value_at_repossession_and_reports_proceeds_as_information():
    rows = asic_2022.asic_rows(_episode(collateral_at_index=0.55, recovery=0.10))
    assert _row(rows, "5b").passed and _row(rows, "5b").measured.startswith("55.0 %")
    info = _row(rows, "5b.i")
    assert info.info and info.measured == "10.0 %"
    # high realised proceeds do not rescue a low value at repossession
    rows = asic_2022.asic_rows(_episode(collateral_at_index=0.25, recovery=0.50))
    assert not _row(rows, "5b").passed
    rows = asic_2022.asic_rows(_episode(collateral_at_index=0.66))
    assert not _row(rows, "5b").passed  # above 65 %


def test_the_four_2022_cases_by_hand():
    """Core: 25 / 38.6 = 64.8 %; Greenidge: 57 / 74 = 77.0 % to 68 / 74 = 91.9 %; Bitfarms:
    5 / 21 = 23.8 %; Stronghold: no reported value. Information rows, never a FAIL."""
    rows = {r.id: r for r in asic_2022.asic_rows(_episode())}
    assert rows["5b.1"].measured.startswith("64.8 %:")
    assert rows["5b.2"].measured.startswith("n/a:")
    assert rows["5b.3"].measured.startswith("77.0 %-91.9 %:")
    assert rows["5b.4"].measured.startswith("23.8 %:")
    for cid in ("5b.1", "5b.2", "5b.3", "5b.4"):
        assert rows[cid].info and "docs/calibration.md" in rows[cid].source
        assert "issue" not in rows[cid].source.lower()
    report = val.render_report({"checks": list(rows.values()), "data": {}, "quick": True,
                                "root_seed": 1, "seconds": 0.0, "gk": {"n": 1, "draws": 1}})
    assert "| 5b.4 2022 case: Bitfarms -> BlockFi" in report and "| INFO |" in report


# ---------------------------------------------------------------- 5a: rig classes
def test_rig_class_bands_by_hand():
    """efficient -86.8 % +- 3 pp = 83.8-89.8 %; mid-tier 86-92 %; old 88-94 %."""
    for cls, lo, hi in (("efficient", 0.838, 0.898), ("mid_tier", 0.86, 0.92),
                        ("old", 0.88, 0.94)):
        b = asic_2022.rig_class_band(cls)
        assert (b["lo"], b["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert asic_2022.RIG_CLASS["S19"] == "efficient"  # 3.25 kW / 100 TH/s = 32.5 J/TH < 38
    # Luxor's "about 85 % in a year" sits inside the efficient band
    assert asic_2022.rig_class_band("efficient")["lo"] < common.BANDS["asic_price_fall"]["year"]


@pytest.mark.parametrize(("falls", "ok"), [({"S19": 0.87}, True), ({"S19": 0.837}, False),
                                           ({"S19": 0.899}, False), ({"S9": 0.91}, False)])
def test_5a_compares_each_class_with_its_figure(falls, ok):
    assert _row(asic_2022.asic_rows(_episode(falls=falls)), "5a").passed is ok


def test_5c_without_forced_sales_fails_and_says_so():
    r = _row(asic_2022.asic_rows(_episode(distressed_discount=None)), "5c")
    assert not r.passed and r.measured == "no forced sale in the 12 months"


# ---------------------------------------------------------------- 5d: the rig book alone
def test_rig_book_counterfactual_flags_rig_only_lenders():
    """Lenders whose whole loan book is rig loans (gpu_share 1): the rig book's losses alone
    exceed the equity of several lenders solvent at t0, and 5d fails."""
    rb = asic_2022.rig_book_test(RIG_ONLY, shares=(1.0,))
    al = rb["alone"]
    assert al["solvent0"] == 20 and al["failed_solvent"] >= 5
    assert al["max_loss_over_e0"] > 1.0  # a rig-book loss larger than the t0 equity
    assert rb["sensitivity"]["1.0"] == al  # the same counterfactual run
    rows = asic_2022.rig_book_rows(rb)
    assert not rows[0].passed and rows[0].id == "5d"
    assert rows[1].info and "first failure at gpu_share 1.0" in rows[1].measured


def test_shipped_episode_no_lender_fails_from_its_rig_book():
    """asic_2022 as shipped: the two crypto lenders (BlockFi, Celsius) fail in the episode
    through the other_loans shock (FTX, Three Arrows), and no lender fails in the isolating
    counterfactual (no other-loan loss, no such shock): 5d does not count failures the rig
    book alone would not cause, and passes."""
    rb = asic_2022.rig_book_test(shares=(0.09,))
    assert rb["gpu_share"] == {t: 0.09 for t in TYPES}
    assert rb["episode"]["failed"] == 2
    assert rb["alone"]["failed_solvent"] == 0
    assert rb["sensitivity"]["0.09"] == rb["alone"]
    assert 0.0 < rb["alone"]["max_loss_over_e0"] < 1.0
    assert asic_2022.rig_book_rows(rb)[0].passed


def test_no_default_no_rig_book_loss():
    """One month: no borrower has defaulted, so no write-off, no inventory: loss 0."""
    from sim.core.config import load_scenario

    got = asic_2022.lender_run(load_scenario("asic_2022", months=1))
    assert got == {"solvent0": 20, "failed": 0, "failed_solvent": 0, "max_loss_over_e0": 0.0}


# ---------------------------------------------------------------- the other_loans shock
def test_other_loans_shock_by_hand():
    """A shock of size 0.57 on the crypto lenders in month 8: their other loans are 43 % of
    what they were the month before less one month's write-off at the stress rate (3 %/yr),
    B8 = B7 x (1 - 0.57) x (1 - 0.03 / 12); other types lose only the monthly rate."""
    from sim.core.config import load_scenario
    from sim.world.model import LiquidationModel

    m = LiquidationModel(load_scenario("asic_2022", months=8))
    lb = m.lenders
    crypto = lb.kind == "crypto_lender"
    assert crypto.sum() == 2
    for _ in range(7):
        m.step()
    b7, rate = lb.other_loans.copy(), np.where(lb.other_loss_stress > 0,
                                               lb.other_loss_stress, 0.0)
    assert m.env.stress  # BTC is more than 30 % off its peak
    m.step()
    want = np.where(crypto, b7 * 0.43, b7) * (1 - rate / 12)
    np.testing.assert_allclose(lb.other_loans, want, rtol=1e-12)
    assert m.invariants() == []


def test_other_loans_shock_names_a_lender_type():
    from sim.core.config import ConfigError, load_scenario

    with pytest.raises(ConfigError, match="lender_type"):
        load_scenario("baseline", ["shocks+={month=2, kind='other_loans', size=0.5, "
                                   "lender_type='hedge_fund'}"])
    cfg = load_scenario("baseline", ["shocks+={month=2, kind='other_loans', size=0.5}"])
    assert cfg.shocks[-1].lender_type == ""  # every type
    # an unset lender_type is left out of saved configs, so their hashes stay what they were
    dumped = cfg.model_dump()["shocks"]
    assert all("lender_type" not in sh for sh in dumped)
    named = load_scenario("asic_2022").model_dump()["shocks"]
    assert [sh["lender_type"] for sh in named if "lender_type" in sh] == ["crypto_lender"]
