"""Phase 9's kernels (sim.world.kernels.record) against the numpy phase: one record month
stepped both ways from the same states (including -0.0, NaN-free edge values and a borrower
under a margin call), a panel row checked by hand, and whole short runs with the switches
the golden cases leave at their defaults (no sites, no other loans, net credit losses, no
system loss, a secured repo desk with a buyer of last resort, no colocation charge)."""

import copy

import numpy as np
import pytest

from agents.borrower import BorrowerStatus
from sim.core.config import load_scenario
from sim.qa.oracle import engine_mismatches, model_state, same_bits
from sim.world.model import LiquidationModel
from sim.world.phases import record


def _record_both(m, mutate=None):
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    for x in (a, b):
        x.env.t += 1  # a fresh row (the month after the last one recorded)
        if mutate is not None:
            mutate(x)
    a.engine, b.engine = "numpy", "compiled"
    record.run(a)
    record.run(b)
    sa, sb = model_state(a), model_state(b)
    bad = [k for k in sa if not same_bits(sa[k], sb[k])]
    bad += [f"rec.{k}" for k in a.rec if not same_bits(a.rec[k], b.rec[k])]
    bad += [f"panel.{k}" for k in a.panel if not same_bits(a.panel[k], b.panel[k])]
    bad += [f"losses_state.{k}" for k in a.losses_state
            if not same_bits(a.losses_state[k], b.losses_state[k])]
    return bad, b


@pytest.mark.parametrize("months", [1, 5, 12])
def test_record_month_as_numpy(months, numpy_model):
    bad, _ = _record_both(numpy_model(months))
    assert bad == []


def test_record_edges_and_panel_by_hand(numpy_model):
    """-0.0 cash, a healthy borrower in arrears and one under a margin call (DISTRESSED in the
    panel), a defaulted one (its t0 equity counts as wiped out), a lender failed and one
    deleveraging, the recorded generation taken as liquid-cooled: the same bits; borrower 0's
    size is its fleet at the price plus its BTC."""
    def mutate(m):
        b, lb = m.borrowers, m.lenders
        lb.cash[0] = -0.0
        b.cash[1] = -0.0
        b.status[:4] = BorrowerStatus.HEALTHY
        b.arrears_months[2], b.call_months[2] = 1, -1
        b.call_months[3], b.arrears_months[3] = 0, 0
        b.status[4] = BorrowerStatus.DEFAULTED
        lb.status[:2] = [2, 1]
        b.fleet[0] = [1, 2, 0, 0, 3][: b.fleet.shape[1]]
        m.liquid = [*m.liquid]
        m.liquid[m.h100] = True  # the recorded capacity in liquid-cooled MW only
    bad, m = _record_both(numpy_model(4), mutate)
    assert bad == []
    t, nl = m.env.t, m.lenders.n
    state = m.panel["state"][t]
    assert state[nl + 2] == state[nl + 3] == BorrowerStatus.DISTRESSED
    assert state[:2].tolist() == [2, 1]
    assert m.rec["lender_failures"][t] == 1 and m.rec["lenders_deleveraging"][t] == 1
    p, fleet = m.price, m.borrowers.fleet[0]
    by_hand = 0.0
    for k in range(len(p)):  # fewer than 8 generations: the plain sum from 0.0
        by_hand += fleet[k] * p[k]
    assert m.panel["size"][t, nl] == by_hand + m.borrowers.btc[0] * m.env.btc
    assert np.signbit(m.panel["cash"][t, 0]) and np.signbit(m.panel["cash"][t, nl + 1])


@pytest.mark.parametrize("overrides", [
    ("sites.enabled=false",),
    ("metrics.losses_at_writeoff=false",),
    ("metrics.system_loss=false",),
    ("lenders.types.bank.gpu_share=1.0", "lenders.types.private_credit.gpu_share=1.0",
     "lenders.types.abl.gpu_share=1.0"),
    ("policy.repo.enabled=true", "policy.lolr.enabled=true"),
    ("environment.facility_cost=0.0",),
], ids=["no_sites", "net_losses", "no_system_loss", "no_other_loans", "repo+lolr", "no_facility"])
def test_switches_as_numpy(overrides):
    assert engine_mismatches("crypto_winter", overrides, months=14) == []


def test_record_inputs_kept_per_run_follow_a_copy():
    """The per-run inputs the compiled phase keeps (m.kernel_inputs["record"]: the record
    arrays the kernel's values go to) are copied with the model: stepping a deep copy writes
    the copy's records only, and gives the records of the run it was copied from."""
    cfg = load_scenario("crypto_winter")
    full = LiquidationModel(cfg)
    for _ in range(9):
        full.step()
    m = LiquidationModel(cfg)
    for _ in range(5):
        m.step()
    assert "record" in m.kernel_inputs
    before = copy.deepcopy(m.rec)
    c = copy.deepcopy(m)
    for _ in range(4):
        c.step()
    assert [k for k in m.rec if not same_bits(m.rec[k], before[k])] == []
    assert [k for k in c.rec if not same_bits(c.rec[k], full.rec[k])] == []
    assert [k for k in c.panel if not same_bits(c.panel[k], full.panel[k])] == []
