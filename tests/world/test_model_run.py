"""``LiquidationModel.run`` steps months without Mesa's event-list round trip when Mesa's default
step schedule is all that is scheduled, and leaves Mesa's state (steps, time, the schedule's
execution count and next event, the time signals, the step log lines) exactly as stepping
through ``model.step()`` does; anything else scheduled sends every month through
``model.step()``."""

from __future__ import annotations

import logging

import mesa.time.events as mesa_events
import numpy as np
import pytest

from sim.world import phases
from sim.world.model import LiquidationModel

MONTHS = 6


def _model(months: int = MONTHS) -> LiquidationModel:
    return LiquidationModel("crypto_winter", seed=3, months=months)


def _by_step(m: LiquidationModel) -> LiquidationModel:
    while m.running:
        m.step()
    return m


def _mesa_state(m: LiquidationModel) -> dict:
    gen = m._default_schedule
    return {"steps": m.steps, "time": m.time, "running": m.running,
            "executions": gen.execution_count, "next": gen.next_scheduled_time,
            "active": gen.is_active, "events": len(m._event_list),
            "month": m.month}


def _events_made(monkeypatch) -> list:
    made = []
    init = mesa_events.Event.__init__

    def counting(self, *args, **kwargs):
        made.append(args[0] if args else kwargs.get("time"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(mesa_events.Event, "__init__", counting)
    return made


def test_run_takes_the_direct_path_and_ends_in_mesas_state(monkeypatch):
    fresh = _model()
    assert fresh._plain_schedule() is fresh._default_schedule  # the direct path applies
    made = _events_made(monkeypatch)
    direct = fresh.run()
    assert made == [MONTHS + 1.0]  # one step event made: the next one, not one a month
    made.clear()
    stepped = _by_step(_model())
    # Mesa's path: the first step event (made with the model), then one a month
    assert made == [float(t) for t in range(1, MONTHS + 2)]
    assert _mesa_state(direct) == _mesa_state(stepped) == {
        "steps": MONTHS, "time": float(MONTHS), "running": False, "executions": MONTHS,
        "next": MONTHS + 1.0, "active": True, "events": 1, "month": MONTHS}
    for key, arr in stepped.rec.items():
        assert np.array_equal(direct.rec[key], arr, equal_nan=True), key
    assert direct.events == stepped.events


def test_mesa_stepping_after_a_direct_run_goes_on_from_there():
    """After run(), model.step() and run_for() find the next step event where Mesa left it."""
    states = []
    for direct in (True, False):
        m = _model(months=10)
        m.cfg = m.cfg.model_copy(update={"months": 4})  # stop after 4 months
        m.run() if direct else _by_step(m)
        m.cfg = m.cfg.model_copy(update={"months": 10})
        m.running = True
        m.step()  # Mesa's own path: month 5
        m.run_for(2)  # months 6 and 7
        states.append((_mesa_state(m), m.rec["credit_losses"].tolist()))
    assert states[0] == states[1]
    assert states[0][0]["steps"] == 7 and states[0][0]["time"] == 7.0


def test_another_scheduled_event_sends_months_through_mesa(monkeypatch):
    fired = []
    seen = []
    for direct in (True, False):
        m = _model()

        def note(m=m):
            fired.append((m.time, m.month))

        m._note = note  # a bound target Mesa can hold weakly
        m.schedule_event(m._note, at=3.5)
        if direct:
            assert m._plain_schedule() is None
            m.run()
        else:
            _by_step(m)
        seen.append(_mesa_state(m))
    assert fired == [(3.5, 3), (3.5, 3)]
    assert seen[0] == seen[1]


def test_time_observers_and_step_log_lines_are_the_same(caplog):
    got = []
    for direct in (True, False):
        m = _model()
        times: list = []

        def note(msg, times=times):
            times.append(msg.additional_kwargs["new"])

        m.observe("time", "changed", note)  # held weakly by Mesa: `note` keeps it alive
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="MESA.mesa.model"):
            m.run() if direct else _by_step(m)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Step")]
        got.append((times, lines))
    assert got[0] == got[1]
    assert got[0][0] == [float(t) for t in range(1, MONTHS + 1)]
    assert got[0][1][-1] == f"Step {MONTHS} at time {float(MONTHS)}"


def test_a_month_that_raises_leaves_mesas_state_as_model_step_does(monkeypatch):
    real = phases.prices.run
    states = []
    for direct in (True, False):
        m = _model()

        def boom(model, month, real=real, m=m):
            if model is m and model.month == 3:
                raise RuntimeError("month 3 fails")
            return real(model, month)

        monkeypatch.setattr(phases.prices, "run", boom)
        with pytest.raises(RuntimeError, match="month 3 fails"):
            m.run() if direct else _by_step(m)
        states.append(_mesa_state(m))
    assert states[0] == states[1]
    # Mesa popped the failed month's event and scheduled none after it
    assert states[0]["steps"] == 3 and states[0]["executions"] == 2
    assert states[0]["events"] == 0


def test_on_month_is_called_after_each_month_and_may_schedule_events():
    """With on_month every month goes through model.step(): an event the callback schedules
    fires when it is due, as it does when stepping by hand."""
    seen, fired = [], []
    m = _model()

    def note():
        fired.append(m.time)

    def on_month(month):
        seen.append(month)
        if month == 2:
            m.schedule_event(note, at=3.5)

    m.run(on_month=on_month)
    assert seen == list(range(1, MONTHS + 1))
    assert fired == [3.5]
    assert _mesa_state(m) == _mesa_state(_by_step(_model()))


@pytest.mark.parametrize("missing", ["_current_event", "_execution_count", "_schedule_next"])
def test_a_mesa_without_the_internals_read_falls_back_to_model_step(missing):
    """If a Mesa release renamed what the direct path reads, months go through model.step()
    (and give the same months) instead of failing."""
    m = _model()
    gen = m._default_schedule

    class Renamed:  # the schedule as a Mesa without the attribute would have it
        def __getattr__(self, name):
            if name == missing:
                raise AttributeError(name)
            return getattr(gen, name)

    m.__dict__["_default_schedule"] = Renamed()
    assert m._plain_schedule() is None
    m.run()  # through model.step(): Mesa's event list holds the real schedule's events
    assert _mesa_state(m) == _mesa_state(_by_step(_model()))
