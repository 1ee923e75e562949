"""Tests for sim.plots: the five PNGs are written and valid, and the figures show the records."""

import struct
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from sim.config import Scenario
from sim.model import LiquidationModel
from sim.plots import (
    FIGURES,
    STATE_COLOURS,
    defaults_figure,
    fire_sales_figure,
    losses_figure,
    network_figure,
    network_layout,
    price_figure,
    worst_month,
    write_figures,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILES = ("price_vs_fundamental.png", "defaults_by_type.png", "cumulative_losses.png",
         "fire_sales.png", "network_worst_month.png")


def _crypto_winter(months: int = 12) -> Scenario:
    return Scenario.model_validate({
        "name": "crypto_winter_test", "months": months,
        "shocks": [{"month": 2, "kind": "btc", "size": 0.6}],
        "environment": {"rent_deflation": 0.5},
    })


@pytest.fixture(scope="module")
def baseline():
    return LiquidationModel(Scenario(months=12)).run()


@pytest.fixture(scope="module")
def winter():
    return LiquidationModel(_crypto_winter()).run()


@pytest.fixture(params=["baseline", "winter"])
def model(request):
    return request.getfixturevalue(request.param)


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name}: not a PNG"
    assert data[12:16] == b"IHDR", f"{path.name}: first chunk is not IHDR"
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- files
def test_write_figures_writes_five_valid_pngs(model, tmp_path):
    out = tmp_path / "figs"
    paths = write_figures(model, out)
    assert [p.name for p in paths] == list(FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for p in paths:
        assert p.is_file()
        w, h = _png_size(p)
        assert w > 300 and h > 300, f"{p.name}: {w}x{h}"


def test_figures_table_matches_files():
    assert tuple(FIGURES) == FILES


def test_no_pyplot_and_core_does_not_import_plots():
    code = ("import sys, sim.model, sim.network\n"
            "assert 'sim.plots' not in sys.modules\n"
            "assert 'matplotlib' not in sys.modules\n"
            "import sim.plots\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- data
def _axis_for(fig, name):
    hits = [ax for ax in fig.axes if ax.get_title().split()[:1] == [name]]
    assert len(hits) == 1, f"no panel for {name}"
    return hits[0]


def _line(ax, gid):
    hits = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(hits) == 1
    return hits[0]


def test_price_panels_show_the_records(model):
    rec, env = model.rec, model.env
    fig = price_figure(model)
    t = np.arange(model.cfg.months + 1)
    gens = [g for g in range(model.n_gen) if np.any(rec["price"][:, g] != 0)]
    assert gens
    for g in gens:
        ax = _axis_for(fig, env.names[g])
        live = t >= env.launch[g]
        for gid, key in (("price", "price"), ("fundamental", "fundamental")):
            y = np.asarray(_line(ax, gid).get_ydata(), dtype=float)
            np.testing.assert_array_equal(y[live], rec[key][live, g])
            assert np.isnan(y[~live]).all()  # no market before launch: blank, not zero
        floors = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
        assert floors[0].get_ydata()[0] == pytest.approx(
            model.cfg.buyers.salvage_floor * env.list_price[g])
    # generations that never had a price get no panel
    for g in set(range(model.n_gen)) - set(gens):
        assert not [ax for ax in fig.axes if ax.get_title().startswith(env.names[g] + " ")]


def test_price_line_equals_records_for_a_shipping_generation(baseline):
    g = baseline.env.names.index("H100")
    ax = _axis_for(price_figure(baseline), "H100")
    np.testing.assert_array_equal(_line(ax, "price").get_ydata(), baseline.rec["price"][:, g])


def test_defaults_bars_and_lines(winter):
    rec = winter.rec
    fig = defaults_figure(winter)
    ax, tw = fig.axes[0], fig.axes[1]
    miner, neo = ax.containers
    np.testing.assert_array_equal([b.get_height() for b in miner], rec["defaults_miner"])
    np.testing.assert_array_equal([b.get_height() for b in neo], rec["defaults_neocloud"])
    np.testing.assert_array_equal([b.get_y() for b in neo], rec["defaults_miner"])
    ys = [np.asarray(ln.get_ydata()) for ln in tw.get_lines()]
    np.testing.assert_array_equal(ys[0], np.cumsum(rec["defaults_miner"]))
    np.testing.assert_array_equal(ys[1], np.cumsum(rec["defaults_neocloud"]))
    np.testing.assert_array_equal(ys[2], rec["lender_failures"])


def test_losses_in_millions(winter):
    ax = losses_figure(winter).axes[0]
    lines = ax.get_lines()
    for ln, key in zip(lines, ("writeoffs", "recoveries", "credit_losses"), strict=True):
        np.testing.assert_allclose(ln.get_ydata(), winter.rec[key] / 1e6)
    assert "$ millions" in ax.get_ylabel()


def test_fire_sale_panels(winter):
    rec, names = winter.rec, winter.env.names
    fig = fire_sales_figure(winter)
    top, bot = fig.axes[:2]
    y = [np.asarray(ln.get_ydata()) for ln in top.get_lines()]
    for got, key in zip(y, ("volume", "forced_volume", "salvage", "overhang"), strict=True):
        np.testing.assert_array_equal(got, rec[key].sum(axis=1))
    forced, price, fund = rec["forced_volume"], rec["price"], rec["fundamental"]
    for g in range(winter.n_gen):
        m = (forced[:, g] > 0) & (fund[:, g] > 0)
        marks = [ln for ln in bot.get_lines() if ln.get_gid() == names[g]]
        if not m.any():
            assert not marks
            continue
        np.testing.assert_array_equal(marks[0].get_xdata(), np.flatnonzero(m))
        np.testing.assert_allclose(marks[0].get_ydata(), 1 - price[m, g] / fund[m, g])


# --------------------------------------------------------------------------- network
def test_worst_month():
    def fake(losses):
        return SimpleNamespace(rec={"credit_losses": np.asarray(losses, dtype=float)})

    assert worst_month(fake([0, 0, 5, 5, 20, 19])) == 4
    assert worst_month(fake([0, 0, 0, 0])) == 3  # no losses: the last month
    assert worst_month(fake([0, 3, 1])) == 1
    assert worst_month(fake([0])) == 0


def test_network_layout_is_deterministic_and_bipartite(baseline):
    m = baseline
    nl, nb, nk = m.lenders.n, m.borrowers.n, m.buyers.n
    pos = network_layout(m)
    assert pos.shape == (len(m.panel_agents), 2) == (nl + nb + nk, 2)
    np.testing.assert_array_equal(pos, network_layout(m))
    r = np.hypot(pos[:, 0], pos[:, 1])
    np.testing.assert_allclose(r[:nl], 1.0)
    np.testing.assert_allclose(r[nl: nl + nb], 2.3)
    assert (pos[nl + nb:, 0] > r[nl: nl + nb].max()).all()  # buyers to one side
    assert len(np.unique(pos.round(9), axis=0)) == len(pos)  # no two nodes on one spot


def test_network_colours_follow_the_panel_state(winter):
    m = winter
    t = worst_month(m)
    fig = network_figure(m)
    assert f"network at month {t} " in fig.get_suptitle()
    nl, nb = m.lenders.n, m.borrowers.n
    state = m.panel["state"][t]
    ax = fig.axes[0]
    by_gid = {c.get_gid(): c for c in ax.collections if c.get_gid()}
    lenders = by_gid["lender"]
    np.testing.assert_allclose(lenders.get_offsets(), network_layout(m)[:nl])
    want = np.array([to_rgba(STATE_COLOURS[s]) for s in state[:nl]])
    np.testing.assert_allclose(lenders.get_facecolors(), want)
    miners = np.flatnonzero(m.borrowers.kind == 0)
    want = np.array([to_rgba(STATE_COLOURS[s]) for s in state[nl + miners]])
    np.testing.assert_allclose(by_gid["miner"].get_facecolors(), want)
    assert (state[nl: nl + nb] == 2).any()  # the crypto winter defaults show up in red
    sizes = by_gid["lender"].get_sizes()
    big = np.argmax(m.panel["size"][t, :nl])
    assert sizes[big] == sizes.max()


def test_network_month_argument(baseline):
    fig = network_figure(baseline, month=0)
    assert "network at month 0 " in fig.get_suptitle()
