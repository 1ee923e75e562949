"""Valid scenarios at the numerical edges, found by a fuzzer: the accounting invariants hold
every month and nothing raises; and the functions changed to make them hold, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from agents.buyer import BIG
from sim.core.config import load_scenario
from sim.core.finance import largest_remainder
from sim.core.market import MAX_UNITS, call_auction
from sim.world.model import LiquidationModel

GEN = ("environment.generations=[{name='G0',launch_month=-1,list_price=30000.0,"
       "kw_per_gpu=1e-06,rent0=1e-06,rent_index='hashprice'},{name='G1',launch_month=600,"
       "list_price=30000.0,kw_per_gpu=1000.0,rent0=2.0}]")
EDGES = {
    # a cash sweep repays the whole debt in month 1 after the call was counted uncured
    "repaid_facility": (["borrowers.neocloud.count=24", "environment.power_price=1e6",
                         "lenders.cure_months=0"], 328592348, 1),
    # principal dust (-1e-10) on some rows of a defaulting facility
    "principal_dust": (["borrowers.neocloud.count=29", "lenders.count=10",
                        "borrowers.neocloud.spread=0.317396334511136",
                        "borrowers.miner.fleet_mean=10664.247693941603",
                        "borrowers.miner.count=36", "network.syndicate=652.3161512467063",
                        "borrowers.neocloud.fleet_mix=[1e-300]", "environment.sofr=0.5",
                        "borrowers.neocloud.capex_multiple=1.6112233114166652",
                        "borrowers.neocloud.amortisation=0.7050750007245937"], 1039694040, 12),
    # capital / a reservation near 0 exceeds int64
    "capacity_overflow": (["buyers.types.tier2.integration_cost=0",
                           "buyers.capacity_scale=190466.8289918946",
                           "buyers.types.tier2.spare_mw=1e6", GEN,
                           "borrowers.miner.fleet_mix=[1,1]",
                           "borrowers.neocloud.fleet_mix=[1,1]"], 3713211660, 6),
    # 102 bids, each capped at the supply, total more than 2**31 - 1 units
    "many_unlimited_bids": (["borrowers.neocloud.fleet_mean=1e6", "buyers.unlimited=true",
                             "buyers.types.broker.count=100",
                             "borrowers.neocloud.fixed_opex_per_gpu=1e6"], 1, 6),
}


def _run(overrides, seed, months):
    model = LiquidationModel(load_scenario(None, overrides, seed=seed, months=months))
    units0 = model.gpu_units().copy()
    for month in range(months):
        model.step()
        assert model.invariants() == [], f"month {month + 1}"
    np.testing.assert_array_equal(model.gpu_units(), units0)
    return model


@pytest.mark.parametrize("name", EDGES)
def test_invariants_hold_at_the_edges(name):
    _run(*EDGES[name])


def test_a_facility_that_owes_nothing_is_not_defaulted():
    model = _run(*EDGES["repaid_facility"])
    b = model.borrowers
    assert model.new_defaults.tolist() == [0, 0]
    assert (b.status == BorrowerStatus.HEALTHY).all()
    assert (b.call_months == -1).all()  # LTV 0: the call is cured
    assert b.fleet.sum() > 0  # the borrowers keep their GPUs


def test_largest_remainder_splits_a_group_without_weight_equally():
    # 512 units, weights all 0: 512 / 3 = 170.67 each, the 2 left over to rows 0 and 1
    # (ties to the lower row); group 1 (7 units, weights 1, 1, 0) splits 3.5 / 3.5 -> 4 / 3
    got = largest_remainder(np.array([512, 7]), np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0]),
                            np.array([0, 0, 0, 1, 1, 1]))
    assert got.tolist() == [171, 171, 170, 4, 3, 0]


def test_largest_remainder_ignores_negative_dust():
    # a facility repaid down to dust: weights (3e-10, -1e-10, 0) summed to 2e-10 gave quotas
    # 15, -5, 0 (a lender with -5 units); counted as (3e-10, 0, 0) the first row takes all 10
    got = largest_remainder(np.array([10]), np.array([3e-10, -1e-10, 0.0]), np.zeros(3, int))
    assert got.tolist() == [10, 0, 0]
    # weights (-1e-10, 3, 1) count as (0, 3, 1): quotas 0, 7.5, 2.5 -> 0, 7, 2 and the one
    # unit left to the tie 0.5 / 0.5 at the lower row: 0, 8, 2
    got = largest_remainder(np.array([10]), np.array([-1e-10, 3.0, 1.0]), np.zeros(3, int))
    assert got.tolist() == [0, 8, 2]


def test_largest_remainder_positive_weights_as_before():
    # quotas 10 x (1, 1, 1) / 3 = 3.33 each: 3 each and the one left to row 0
    got = largest_remainder(np.array([10]), np.ones(3), np.zeros(3, dtype=int))
    assert got.tolist() == [4, 3, 3]


@pytest.mark.parametrize("n_pad", [0, 40])  # the list path (<= 32 orders) and numpy's
def test_auction_accepts_bids_totalling_more_than_the_ask_limit(n_pad):
    # 1,000 market-order units against three bids of 2**31 - 1 units at 5, 4, 3 (about 6.4e9
    # units in all): the best bid takes all 1,000; the next bid unit (1,001st) is still the
    # first bid's, at 5, so lo = max(0, 5) = hi = min(5, inf) = 5. Zero-quantity padding
    # rows change nothing.
    big = MAX_UNITS
    pad = [0] * n_pad
    res = call_auction([1000] + pad, [0.0] + [1.0] * n_pad, [big, big, big],
                       [5.0, 4.0, 3.0])
    assert res.volume == 1000
    assert res.price == 5.0
    assert res.bid_fills.tolist() == [1000, 0, 0]
    assert res.ask_fills.tolist() == [1000] + pad


@pytest.mark.parametrize("n_pad", [0, 40])
def test_auction_refuses_books_its_int64_arithmetic_cannot_clear(n_pad):
    pad_q, pad_p = [0] * n_pad, [1.0] * n_pad
    with pytest.raises(ValueError, match="units on the ask side"):
        call_auction([MAX_UNITS, 1] + pad_q, [0.0, 0.0] + pad_p, [5], [1.0])
    with pytest.raises(ValueError, match="units per bid"):
        call_auction([5] + pad_q, [0.0] + pad_p, [MAX_UNITS + 1], [1.0])
    with pytest.raises(ValueError, match="units per bid"):  # int64 would wrap: 4 x 2**62
        call_auction([5] + pad_q, [0.0] + pad_p, [2**62] * 4, [1.0] * 4)


def test_buyer_capacity_is_capped_at_big():
    model = LiquidationModel(load_scenario("baseline", months=1))
    buyers = model.buyers
    n = buyers.n
    # capital (>= $4e7) / 1e-290 and MW (>= 3) x 1000 / 1e-290 kW are far beyond int64
    # (9.2e18): every buyer gets BIG = 1e12 units, the capacity of an unlimited buyer
    assert buyers.capital.min() > 0 and buyers.mw.min() > 0
    cap = buyers.capacity(np.full(n, 1e-290), 1e-290)
    assert cap.tolist() == [int(BIG)] * n
    assert buyers.capacity_total(1e-290, 1e-290) == float(n * int(BIG))
    # a price of 0 is no capacity from capital (as before)
    assert buyers.capacity(np.zeros(n), 1.0).tolist() == [0] * n


def test_fleets_beyond_what_one_auction_trades_are_one_line(tmp_path, capsys):
    """5,000 neo-clouds of 1e6 H100s each draw ~5e9 GPUs of one generation, more than the
    call auction's exact unit range (MAX_UNITS = 2**31 - 1 ask units): refused when the model
    is built, one line and exit 2, instead of a ValueError from the market months later."""
    from sim.cli import main

    argv = ["run", "--months", "1", "--no-figures", "--out", str(tmp_path / "o"),
            "--set", "borrowers.miner.count=0", "--set", "borrowers.neocloud.count=5000",
            "--set", "borrowers.neocloud.fleet_mean=1e6",
            "--set", "borrowers.neocloud.fleet_mix=[0, 1]"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liqsim: error: the drawn fleets hold 4,99")
    assert err.endswith(f"GPUs of one generation; at most {MAX_UNITS:,} can be traded: lower "
                        "borrowers' count or fleet_mean")
    assert not (tmp_path / "o").exists()
