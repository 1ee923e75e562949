"""Self-describing outputs: Parquet field metadata, the generated data dictionary, NaN before
launch, dates, named states, one meaning per events column, figures that name the run,
money ticks, legends that cannot hide a curve, human axis labels."""

from __future__ import annotations

import datetime
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.core.config import load_scenario
from sim.core.keys import human_key
from sim.io import datadict
from sim.io.store import write_run
from sim.views import plots
from sim.world import metrics
from sim.world.runner import run_scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = load_scenario("crypto_winter", {"policy.repo.enabled": True, "lenders.count": 12},
                        months=14)
    model = run_scenario(cfg)
    out = tmp_path_factory.mktemp("run") / "out"
    write_run(model, out)
    return model, out


@pytest.mark.parametrize("table", ["series", "panel", "events"])
def test_every_field_has_unit_and_description(run, table):
    model, out = run
    schema = pq.read_schema(out / f"{table}.parquet")
    assert schema.metadata[b"dictionary"] == b"docs/data_dictionary.md"
    for f in schema:
        meta = {k.decode(): v.decode() for k, v in f.metadata.items()}
        assert (meta["unit"], meta["description"]) == datadict.describe(
            table, f.name, model.env.names), f.name
        assert meta["description"]


def test_series_units_and_nan_before_launch(run):
    model, out = run
    schema = pq.read_schema(out / "series.parquet")
    assert schema.field("price_H100").metadata[b"unit"] == b"$/GPU"
    assert schema.field("date").type == pa.date32()
    s = pd.read_parquet(out / "series.parquet")
    assert s["date"].iloc[0] == datetime.date(2025, 12, 1)
    assert s["date"].iloc[1] == datetime.date(2026, 1, 1)
    rubin = model.env.names.index("Rubin")
    launch = int(model.env.launch[rubin])
    assert launch == 10
    for key in ("price", "fundamental", "rent"):
        assert s[f"{key}_Rubin"].iloc[:launch].isna().all()
        assert s[f"{key}_Rubin"].iloc[launch:].notna().all()
        assert s[f"{key}_H100"].notna().all()
    assert (model.rec["price"][:launch, rubin] == 0).all()  # the model's records keep zeros
    assert s["price_Rubin"].iloc[launch] == model.rec["price"][launch, rubin]


def test_panel_states_are_named(run):
    model, out = run
    p = pd.read_parquet(out / "panel.parquet")
    assert isinstance(p["state"].dtype, pd.CategoricalDtype)
    assert list(p["state"].cat.categories) == list(metrics.STATES)
    last = p[p["month"] == model.month].reset_index(drop=True)
    nl, nb = model.lenders.n, model.borrowers.n
    want_b = np.array(["healthy", "distressed", "defaulted"])[model.panel["state"][-1][nl:nl + nb]]
    assert last["state"].iloc[nl:nl + nb].tolist() == want_b.tolist()
    assert "defaulted" in want_b  # the crisis defaults some borrowers
    assert set(last["state"].iloc[:nl]) <= {"normal", "deleveraging", "failed"}
    assert set(last["state"].iloc[nl + nb:]) == {"active"}


def test_events_have_one_meaning_per_column(run):
    model, out = run
    e = pd.read_parquet(out / "events.parquet")
    raw = pd.DataFrame(model.events, columns=["month", "event", "agent", "index", "generation",
                                              "units", "amount", "price"])
    assert len(e) == len(raw)
    calls = (e["event"] == "margin_call").to_numpy()
    assert calls.any()
    np.testing.assert_array_equal(e["ltv"][calls], raw["price"][calls])
    assert e["price"][calls].isna().all() and e["collateral"][calls].isna().all()
    # trades: auction sales and purchases, and a lender's units sold with its site (sites on)
    trades = e["event"].isin(["sale", "purchase", "site_fleet_sale"]).to_numpy()
    assert (e["event"] == "site_fleet_sale").any()  # the new defaults sell sites with fleets
    np.testing.assert_allclose(e["value"][trades], e["units"][trades] * e["price"][trades])
    assert (e["price"][trades] > 0).all() and e["ltv"][trades].isna().all()
    assert e["price"][~trades].isna().all()  # no LTV, collateral or $/MW value in `price`
    defaults = e["event"].astype(str).str.startswith("default_").to_numpy()
    np.testing.assert_array_equal(e["collateral"][defaults], raw["price"][defaults])
    # a called facility paid off: the debt it repaid, nothing else
    repaid = (e["event"] == "loan_accelerated_repaid").to_numpy()
    assert repaid.any()
    np.testing.assert_array_equal(e["debt"][repaid], raw["amount"][repaid])
    assert (e["debt"][repaid] > 0).all()
    assert e.loc[repaid, ["price", "value", "collateral", "ltv", "loan", "equity",
                          "mw"]].isna().all().all()
    # a site sold: its price in `value` only; a site retired: its MW in `mw` only
    site = (e["event"] == "site_sale").to_numpy()
    np.testing.assert_array_equal(e["value"][site], raw["amount"][site])
    retired = (e["event"] == "site_retired").to_numpy()
    np.testing.assert_array_equal(e["mw"][retired], raw["amount"][retired])
    assert e["mw"][~retired].isna().all()
    assert set(e["generation"].dropna()) <= set(model.env.names)
    assert e["generation"][~(trades | (e["event"] == "repossession").to_numpy())].isna().all()


def test_an_empty_event_log_has_the_same_columns(tmp_path):
    model = run_scenario(load_scenario("baseline", months=1))
    model.events.clear()  # a month without any event
    e = metrics.events(model)
    assert list(e.columns) == list(datadict.EVENTS) and len(e) == 0
    write_run(model, tmp_path / "o")
    assert pq.read_schema(tmp_path / "o" / "events.parquet").names == list(datadict.EVENTS)


def test_data_dictionary_page_is_generated_from_the_metadata():
    assert datadict.PAGE.read_text(encoding="utf-8") == datadict.markdown()
    readme = (datadict.PAGE.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/data_dictionary.md" in readme


def test_every_table_column_is_described(run):
    model, _ = run
    for table, frame in (("series", metrics.series(model)), ("panel", metrics.panel(model)),
                         ("events", metrics.events(model))):
        for col in frame.columns:
            datadict.describe(table, col, model.env.names)
    with pytest.raises(KeyError, match="not in the data dictionary"):
        datadict.describe("series", "bogus", model.env.names)


def test_figures_name_the_run(run):
    model, _ = run
    label = plots.run_label(model)
    assert label.startswith("crypto_winter · seed 20251201 · 14 months · ")
    assert "policy.repo.enabled = true" in label and "lenders.count = 12" in label
    titles = [plots.price_figure(model).get_suptitle(), plots.fire_sales_figure(model)
              .get_suptitle(), plots.network_figure(model).get_suptitle(),
              plots.defaults_figure(model).axes[0].get_title(),
              plots.losses_figure(model).axes[0].get_title()]
    assert all(label in t for t in titles), titles
    plain = run_scenario(load_scenario("baseline", months=2))
    assert plots.run_label(plain) == "baseline · seed 20251201 · 2 months"


@pytest.mark.parametrize("x", [0, 7, 950, 999.6, 1e3, 12_345, 999_500, 1.5e6, 1.2e9, 999.9e9,
                               1.234e12, 5e15, -3e6, -1.2e9])
def test_money_ticks_never_use_e_notation(x):
    text = plots.dollars(x)
    assert re.fullmatch(r"\u2212?\$[0-9][0-9,]*(\.[0-9]+)?[kMBT]?", text), text
    assert "e+" not in text


def test_money_tick_values():
    assert [plots.dollars(x) for x in (950, 12_345, 1.5e6, 1.2e9, -3e6)] == [
        "$950", "$12.3k", "$1.5M", "$1.2B", "\u2212$3M"]


@pytest.mark.slow
@pytest.mark.parametrize("build", [plots.defaults_figure, plots.losses_figure])
def test_legends_are_outside_the_axes(run, build):
    model, _ = run
    fig = build(model)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    a, b = ax.get_window_extent(), legend.get_window_extent()
    assert b.y1 <= a.y0 + 1  # below the plotting area: it cannot cover a curve


def test_axis_labels_use_human_names():
    base = load_scenario("crypto_winter").model_dump(mode="json")
    assert human_key("shocks.0.size", base) == "BTC shock in month 3"
    assert human_key("shocks.1.size", base) == "rent shock in month 3"
    assert human_key("policy.repo.enabled", base) == "repo desk on"
    assert human_key("borrowers.miner.ltv", base) == "miner: loan-to-cost at origination " \
                                                     "(fraction)"
    assert human_key("environment.generations.1.list_price", base).startswith("H100 list price")
    assert human_key("no.such", base) == "no.such"
    from sim.batch.analyze import _human
    sw = SimpleNamespace(meta={"base": base})
    assert _human(sw, "shocks.0.size") == "BTC shock in month 3 [shocks.0.size]"
