"""The columnar event log (sim.world.eventlog.EventLog, ``model.events``): chunks of arrays read
back as typed columns and as the tuples the model's event list held (values, Python types,
order), and every reader of the log unchanged against the list of tuples it replaced: the
events DataFrame and its Parquet bytes, the counts in the summary (several scenarios, mass
defaults among them)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from sim.core.config import load_scenario
from sim.io import datadict
from sim.io.store import write_run
from sim.world import collect, metrics
from sim.world.eventlog import AGENT_CODE, EVENT_AGENTS, EVENT_NAMES, NAME_CODE, EventLog
from sim.world.model import LiquidationModel

TYPES = (int, str, str, int, int, int, float, float)


def _hand_log() -> tuple[EventLog, list[tuple]]:
    """A log written in every shape a caller uses, and the tuples it must read as."""
    log = EventLog()
    # one name, an agent per event (strings), int32 indices, float32 amounts, int prices
    log.add(3, "margin_call", ["miner", "neocloud"], np.array([7, 2], np.int32),
            amount=np.array([2.5, -0.0], np.float32), price=np.array([1, 2]))
    # one event as a tuple and through add_one; numpy scalars converted
    log.append((3, "site_sale", "lender", np.int64(4), -1, 0, np.float64(1.25), 9.5))
    log.add_one(4, "purchase", "salvage", 0, 2, 40, 40 * 0.1, 0.1)
    # codes (what a compiled kernel writes), an array of months, gen and units arrays
    log.add(np.array([4, 5]), np.array([NAME_CODE["repossession"]] * 2),
            AGENT_CODE["lender"], [1, 0], np.array([0, 1]), np.array([3, 5]))
    # a list of names and of agents, indices as a list, lists for units
    log.add(5, ["sale", "purchase"], ["lender", "buyer"], [6, 8], 1, [2, 3],
            np.array([2, 3]) * 0.5, 0.5)
    want = [(3, "margin_call", "miner", 7, -1, 0, 2.5, 1.0),
            (3, "margin_call", "neocloud", 2, -1, 0, -0.0, 2.0),
            (3, "site_sale", "lender", 4, -1, 0, 1.25, 9.5),
            (4, "purchase", "salvage", 0, 2, 40, 4.0, 0.1),
            (4, "repossession", "lender", 1, 0, 3, 0.0, 0.0),
            (5, "repossession", "lender", 0, 1, 5, 0.0, 0.0),
            (5, "sale", "lender", 6, 1, 2, 1.0, 0.5),
            (5, "purchase", "buyer", 8, 1, 3, 1.5, 0.5)]
    return log, want


def test_chunks_read_back_as_the_tuples_and_columns():
    log, want = _hand_log()
    assert len(log) == len(want)
    got = log.tuples()
    assert repr(got) == repr(want) and repr(log) == repr(want)  # -0.0 kept, 4.0 a float
    assert all(tuple(map(type, e)) == TYPES for e in log)
    assert log == want and list(log) == want and log[1] == want[1] and log[2:4] == want[2:4]
    c = log.columns()
    assert [a.dtype for a in c] == [np.dtype(np.int64)] * 6 + [np.dtype(np.float64)] * 2
    np.testing.assert_array_equal(c.month, [3, 3, 3, 4, 4, 5, 5, 5])
    np.testing.assert_array_equal(c.name, [NAME_CODE[e[1]] for e in want])
    np.testing.assert_array_equal(c.agent, [AGENT_CODE[e[2]] for e in want])
    np.testing.assert_array_equal(c.gen, [e[4] for e in want])
    np.testing.assert_array_equal(c.amount, [e[6] for e in want])
    assert np.signbit(c.amount[1])
    assert not c.units.flags.writeable  # readers cannot change the log
    assert log.count_named("repossession") == 2 and log.count_named("default_dscr") == 0
    assert log.count_named("no such event") == 0
    assert log.name_counts()[NAME_CODE["margin_call"]] == 2 and sum(log.name_counts()) == 8
    assert log.count(want[4]) == 1  # a sequence's count: of a tuple


def test_the_vocabularies_are_fixed_and_grow_per_log():
    log = EventLog()
    assert log.names == list(EVENT_NAMES) and log.agents == list(EVENT_AGENTS)
    assert NAME_CODE["margin_call"] == 0 and AGENT_CODE["lender"] == 0
    log.add(1, np.array(["fraud", "fraud"]), "auditor", np.array([0, 1]),
            amount=np.array([1.0, 2.0]))
    assert log.code("fraud") == len(EVENT_NAMES) and log.names[-1] == "fraud"
    assert log.agent_code("auditor") == len(EVENT_AGENTS)
    assert log.tuples() == [(1, "fraud", "auditor", 0, -1, 0, 1.0, 0.0),
                            (1, "fraud", "auditor", 1, -1, 0, 2.0, 0.0)]
    assert EventLog().names == list(EVENT_NAMES)  # another log's vocabulary did not grow


def test_a_chunk_is_copied_and_reading_between_appends():
    log = EventLog()
    idx, amount = np.array([1, 2]), np.array([0.5, 1.5])
    log.add(0, "deleveraging", "lender", idx, amount=amount)
    idx[:], amount[:] = 9, 9.0  # a kernel's scratch buffer reused next month
    assert log.tuples() == [(0, "deleveraging", "lender", 1, -1, 0, 0.5, 0.0),
                            (0, "deleveraging", "lender", 2, -1, 0, 1.5, 0.0)]
    first = log.columns()
    log.add_one(1, "lender_failure", "lender", 3, amount=-2.0)
    log.add(1, "deleveraging", "lender", np.array([4]), amount=np.array([7.0]))
    assert len(log) == 4 and log.count_named("deleveraging") == 3
    assert log[2:] == [(1, "lender_failure", "lender", 3, -1, 0, -2.0, 0.0),
                       (1, "deleveraging", "lender", 4, -1, 0, 7.0, 0.0)]
    np.testing.assert_array_equal(log.columns().idx, [1, 2, 3, 4])
    np.testing.assert_array_equal(first.idx, [1, 2])  # columns read before stay as they were
    log.add(2, "x", "lender", np.array([], np.int64), amount=np.array([]))  # nothing
    assert len(log) == 4
    log.clear()
    assert len(log) == 0 and log.tuples() == [] and log == []
    assert [len(a) for a in log.columns()] == [0] * 8
    assert not any(a.flags.writeable for a in log.columns())


def test_lengths_and_shapes_must_match():
    log = EventLog()
    with pytest.raises(ValueError):
        log.add(0, "sale", "lender", np.array([1, 2]), amount=np.array([1.0]))
    with pytest.raises(ValueError):
        log.add(0, ["sale"], "lender", np.array([1, 2]))
    with pytest.raises(ValueError):
        log.add(0, "sale", "lender", np.zeros((2, 2), np.int64))
    assert len(log) == 0


# -- the readers, against the list of tuples the log replaced

def _old_events_frame(model) -> pd.DataFrame:
    """sim.world.collect.events as it was over the list of tuples (the reference)."""
    raw = pd.DataFrame(list(model.events), columns=list(collect.EVENT_COLUMNS))
    if raw.empty:
        raw = raw.astype({"month": np.int64, "event": str, "agent": str, "index": np.int64,
                          "generation": np.int64, "units": np.int64, "amount": float,
                          "price": float})
    ev = raw["event"].astype(str)
    trade = ev.isin(["sale", "purchase", "site_fleet_sale"])
    default = ev.str.startswith("default_")
    names = np.array([*model.env.names, None], dtype=object)
    gen = raw["generation"].to_numpy(dtype=np.int64)

    def where(mask, col):
        return raw[col].where(mask, np.nan).astype(float)

    return pd.DataFrame({
        "month": raw["month"].astype(np.int64),
        "event": pd.Categorical(ev),
        "agent": pd.Categorical(raw["agent"]),
        "index": raw["index"].astype(np.int64),
        "generation": pd.Categorical(names[np.where(gen >= 0, gen, len(names) - 1)],
                                     categories=list(model.env.names)),
        "units": raw["units"].astype(np.int64),
        "price": where(trade, "price"),
        "value": where(trade | (ev == "site_sale"), "amount"),
        "debt": where(default | ev.isin(["margin_call", "refinancing_refused",
                                         "loan_accelerated_repaid"]), "amount"),
        "collateral": where(default, "price"),
        "ltv": where(ev == "margin_call", "price"),
        "loan": where(ev == "repo_loan", "amount"),
        "equity": where(ev.isin(["deleveraging", "lender_failure"]), "amount"),
        "mw": where(ev == "site_retired", "amount"),
    })


def _old_counts(model) -> tuple[dict, int]:
    names = {"default_payment": "payment", "default_covenant": "ltv", "default_dscr": "dscr"}
    out = dict.fromkeys(names.values(), 0)
    for e in list(model.events):
        if e[1] in names:
            out[names[e[1]]] += 1
    return out, sum(1 for e in list(model.events) if e[1] == "margin_call")


def _parquet(frame: pd.DataFrame, gens) -> bytes:
    buf = io.BytesIO()
    datadict.to_parquet(frame, "events", buf, gens)
    return buf.getvalue()


# every borrower defaulting in month one (tests/world/test_extreme.py)
MASS_DEFAULTS = [*(f"borrowers.{k}.{key}=0" for k in ("miner", "neocloud")
                   for key in ("cash_months", "revolver_share", "contracted_share")),
                 "lenders.grace_months=0",
                 "shocks=[{month=1, kind='rent', size=1.0}, {month=1, kind='btc', size=1.0}]"]
CASES = {
    "baseline": (None, [], None, None),
    "crypto_winter": ("crypto_winter", [], None, None),
    "crypto_winter_repo_numpy": ("crypto_winter", ["policy.repo.enabled=true"], None, "numpy"),
    "asic_2022": ("asic_2022", [], None, None),
    "mass_defaults": (None, MASS_DEFAULTS, 6, None),
    "mass_defaults_numpy": (None, MASS_DEFAULTS, 6, "numpy"),
    "no_events": (None, [], 1, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_readers_give_what_the_list_of_tuples_gave(case):
    scenario, overrides, months, engine = CASES[case]
    m = LiquidationModel(load_scenario(scenario, overrides, months=months), engine=engine)
    m.run()
    new, old = collect.events(m), _old_events_frame(m)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    for col in ("event", "agent", "generation"):
        assert new[col].cat.categories.dtype == old[col].cat.categories.dtype
    assert _parquet(new, m.env.names) == _parquet(old, m.env.names)
    by_cause, calls = _old_counts(m)
    assert metrics.defaults_by_cause(m) == by_cause
    assert metrics.summary(m)["margin_calls"] == calls
    if case == "mass_defaults":  # every borrower defaults: a large log of defaults
        assert sum(by_cause.values()) == m.borrowers.n == 180
    if case == "no_events":
        assert len(m.events) == 0
    else:
        assert len(new) > 100 and calls + sum(by_cause.values()) > 0


def test_a_runs_events_parquet_is_the_list_of_tuples_one(tmp_path):
    m = LiquidationModel("crypto_winter")
    m.run()
    write_run(m, tmp_path / "o")
    got = (tmp_path / "o" / "events.parquet").read_bytes()
    assert got == _parquet(_old_events_frame(m), m.env.names)
    assert set(m.events.names[c] for c in np.unique(m.events.columns().name)) >= {
        "sale", "purchase", "margin_call", "repossession", "default_payment"}
