"""Tests for sim.views.plots: the five PNGs are written and valid, and the figures show the
records."""

import struct
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba

import sim.views.animate
import sim.views.plots
from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.config import Scenario, load_scenario
from sim.views.plots import (
    ARROW_GAP,
    FAILED_LENDER,
    FIGURES,
    NODE_COLOURS,
    defaults_figure,
    draw_network,
    fire_sales_figure,
    losses_figure,
    network_figure,
    network_layout,
    new_figure,
    node_states,
    points_per_unit,
    price_figure,
    worst_month,
    write_figures,
)
from sim.world.model import LiquidationModel

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


@pytest.fixture(scope="module")
def cw():
    """The shipped crypto_winter at seed 5, 12 months, its lenders holding GPU loans only
    (gpu_share 1: no other loans to absorb the losses), so some lenders fail: 2 by month 12,
    1 by month 8 (counted from the event log in the tests)."""
    gpu_only = [f"lenders.types.{t}.gpu_share=1.0" for t in ("bank", "private_credit", "abl")]
    return LiquidationModel(load_scenario("crypto_winter", ["seed=5", *gpu_only],
                                          months=12)).run()


def _failures_by(m, t: int) -> int:
    """Lenders failed by month ``t``, from the event log (one lender_failure event each)."""
    return sum(1 for e in m.events if e[1] == "lender_failure" and e[0] <= t)


@pytest.fixture(params=["baseline", "winter"])
def model(request):
    return request.getfixturevalue(request.param)


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name}: not a PNG"
    assert data[12:16] == b"IHDR", f"{path.name}: first chunk is not IHDR"
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- files
@pytest.mark.slow
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


def test_figure_and_series_month_labels_share_one_calendar():
    from sim.core.environment import calendar_month, month_label
    from sim.world import metrics

    assert sim.views.plots.month_axis(Scenario()) == "month (0 = Dec 2025)"
    months = (0, 1, 13, 25)
    assert [calendar_month(t) for t in months] == [(2025, 12), (2026, 1), (2027, 1), (2028, 1)]
    assert [month_label(t) for t in months] == ["Dec 2025", "Jan 2026", "Jan 2027", "Jan 2028"]
    dates = metrics.series(LiquidationModel(seed=1, months=25).run())["date"]
    assert [dates[t].strftime("%b %Y") for t in months] == [month_label(t) for t in months]


def test_a_scenario_start_moves_every_date_and_label():
    """``start = "2023-03"`` (the GPU backtest): month 10 is Jan 2024, by hand 3 + 10 = 13."""
    from sim.core.environment import calendar_month, month_label
    from sim.world import metrics

    assert calendar_month(10, "2023-03") == (2024, 1) and month_label(0, "2023-03") == "Mar 2023"
    m = LiquidationModel(Scenario(start="2023-03", months=10, seed=1)).run()
    dates = metrics.series(m)["date"]
    assert dates[0].strftime("%Y-%m") == "2023-03" and dates[10].strftime("%Y-%m") == "2024-01"
    assert sim.views.plots.month_axis(m.cfg) == "month (0 = Mar 2023)"
    fig = sim.views.plots.price_figure(m)
    assert "month (0 = Mar 2023)" in [ax.get_xlabel() for ax in fig.axes]


@pytest.mark.parametrize("bad", ["2023-13", "2023-3", "23-03", "march", "1899-12"])
def test_a_bad_start_is_a_config_error(bad):
    from sim.core.config import ConfigError

    with pytest.raises(ConfigError, match="start.*YYYY-MM"):
        load_scenario("baseline", overrides={"start": bad})


def test_png_bytes_are_reproducible_and_carry_no_software_tag():
    def draw():
        fig = sim.views.plots.new_figure(2, 1, dpi=50)
        fig.add_subplot().plot([0, 1], [1, 0])
        return fig

    fig = draw()
    png = sim.views.plots.png_bytes(fig, dpi=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and not fig.axes  # the figure is cleared
    assert struct.unpack(">II", png[16:24]) == (100, 50)  # 2 x 1 inches at 50 dpi
    assert b"Software" not in png and b"matplotlib" not in png
    assert sim.views.plots.png_bytes(draw(), dpi=50) == png


@pytest.mark.slow
def test_no_pyplot_and_core_does_not_import_plots():
    code = ("import sys, sim.world.model, sim.core.network\n"
            "assert 'sim.views.plots' not in sys.modules\n"
            "assert 'matplotlib' not in sys.modules\n"
            "import sim.views.plots\n"
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
        od = model.cfg.buyers.outside_demand  # the scrap value, or the salvage floor when off
        floor = (od.scrap * env.new_unit_price[g] if od.enabled
                 else model.cfg.buyers.salvage_floor * env.list_price[g])
        assert floors[0].get_ydata()[0] == pytest.approx(floor)
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


def _nodes(ax) -> dict:
    """The network's node scatters on ``ax`` by kind (their gid)."""
    return {c.get_gid(): c for c in ax.collections
            if c.get_gid() in ("lender", "miner", "neocloud", "buyer")}


def _kind_index(m) -> dict:
    nl, nb, nk = m.lenders.n, m.borrowers.n, m.buyers.n
    return {"lender": np.arange(nl), "miner": nl + np.flatnonzero(m.borrowers.kind == 0),
            "neocloud": nl + np.flatnonzero(m.borrowers.kind == 1),
            "buyer": nl + nb + np.arange(nk)}


def test_node_states_follow_the_agents_status(cw):
    m, t = cw, cw.cfg.months
    nl = m.lenders.n
    st = node_states(m, t)
    status = np.asarray(m.lenders.status)
    failed, delev = status == LenderStatus.FAILED, status == LenderStatus.DELEVERAGING
    assert failed.sum() == m.rec["lender_failures"][t] == _failures_by(m, t) > 0
    # a failed lender is category 3, a deleveraging one 1, the rest 0
    np.testing.assert_array_equal(st[:nl], np.select([failed, delev],
                                                     [FAILED_LENDER, LenderStatus.DELEVERAGING],
                                                     LenderStatus.NORMAL))
    b = st[nl: nl + m.borrowers.n]
    np.testing.assert_array_equal(b == BorrowerStatus.DEFAULTED,
                                  np.asarray(m.borrowers.status) == BorrowerStatus.DEFAULTED)
    assert not (b == FAILED_LENDER).any() and not (st[nl + m.borrowers.n:]).any()


def test_network_colours_follow_the_states_with_failed_lenders(cw):
    m, t = cw, cw.cfg.months
    fig = network_figure(m, t)
    assert f"network at month {t} " in fig.get_suptitle()
    ax = fig.axes[0]
    nodes, idx = _nodes(ax), _kind_index(m)
    assert sorted(nodes) == sorted(idx)
    pos, st = network_layout(m), node_states(m, t)
    for kind, i in idx.items():
        np.testing.assert_allclose(nodes[kind].get_offsets(), pos[i])
        want = np.array([to_rgba(NODE_COLOURS[s]) for s in st[i]])
        np.testing.assert_allclose(nodes[kind].get_facecolors(), want)
    failed = np.asarray(m.lenders.status) == LenderStatus.FAILED
    lender_fc = nodes["lender"].get_facecolors()
    np.testing.assert_allclose(lender_fc[failed], [to_rgba("#2b2b2b")] * failed.sum())
    assert not np.isclose(lender_fc[failed], to_rgba(NODE_COLOURS[2])).all(axis=1).any()
    defaulted = np.asarray(m.borrowers.status) == BorrowerStatus.DEFAULTED
    miner_fc = nodes["miner"].get_facecolors()
    np.testing.assert_allclose(miner_fc[defaulted[m.borrowers.kind == 0]],
                               [to_rgba("#d62728")] * defaulted[m.borrowers.kind == 0].sum())
    assert failed.sum() == _failures_by(m, t) > 0
    n_delev = (np.asarray(m.lenders.status) == LenderStatus.DELEVERAGING).sum()
    assert f"lenders {n_delev} deleveraging, {failed.sum()} failed" in ax.get_title()
    sizes = nodes["lender"].get_sizes()
    assert np.argmax(sizes) == np.argmax(m.panel["size"][t, : m.lenders.n])
    # the legend names all four states
    labels = [tx.get_text() for lg in fig.axes[1].artists for tx in lg.get_texts()]
    assert "failed (lender)" in labels and "defaulted (borrower)" in labels


def test_network_edges(cw):
    m = cw
    t = m.cfg.months
    ax = network_figure(m, t).axes[0]
    by_gid = {c.get_gid(): c for c in ax.collections}
    term = ~np.asarray(m.loans.revolver, bool)
    pairs = np.unique(np.c_[m.loans.lender[term], m.loans.borrower[term]], axis=0)
    dead = np.asarray(m.borrowers.status)[pairs[:, 1]] == BorrowerStatus.DEFAULTED
    assert len(by_gid["loans"].get_paths()) == (~dead).sum() > 0
    assert len(by_gid["loans_defaulted"].get_paths()) == dead.sum() > 0
    n_funding = int((m.interbank0 > 0).sum())
    assert len(by_gid["funding"].get_paths()) == len(by_gid["funding_heads"].get_paths()) \
        == n_funding > 0
    # each funding arrow ends ARROW_GAP (within one sample) short of the funded lender
    pos = network_layout(m)
    debtor, creditor = np.nonzero(m.interbank0 > 0)
    tips = np.array([p.vertices[-1] for p in by_gid["funding"].get_paths()])
    gap = np.hypot(*(tips - pos[debtor]).T)
    assert (gap >= ARROW_GAP).all() and (gap < ARROW_GAP + 0.03).all()


def test_funding_arrow_geometry_by_hand():
    # lender 0 at (0, 0) funds lender 1 at (1, 0): control point (0.5, -0.2), so the curve's
    # midpoint is 0.25 p0 + 0.5 p1 + 0.25 p2 = (0.5, -0.1); the head points along +x at the tip
    pos = np.array([[0.0, 0.0], [1.0, 0.0]])
    curves, heads = sim.views.plots._funding_arrows(pos, np.array([0]), np.array([1]))
    c = curves[0]
    assert np.hypot(*c[0]) == pytest.approx(ARROW_GAP, abs=0.012)
    assert np.hypot(*(c[-1] - pos[1])) == pytest.approx(ARROW_GAP, abs=0.012)
    assert c[:, 1].min() == pytest.approx(-0.1, abs=0.002)
    tip, left, right = heads[0]
    np.testing.assert_allclose(tip, c[-1])
    assert left[0] < tip[0] and right[0] < tip[0]  # the head's base is behind the tip
    assert np.hypot(*(left - right)) == pytest.approx(2 * sim.views.plots.ARROW_HEAD[1])
    empty, no_heads = sim.views.plots._funding_arrows(pos, np.array([], int), np.array([], int))
    assert empty.shape[0] == no_heads.shape[0] == 0


@pytest.mark.slow
def test_figure_and_animation_frame_draw_the_same_network(cw):
    """The GIF's frame and the static figure: same positions and colours per node, marker areas
    in one ratio (the Axes' scale squared); the app's panel is the same function."""
    assert sim.views.animate.draw_network is draw_network
    m, t = cw, 8
    fig_ax = network_figure(m, t).axes[0]
    frame, net, prices = sim.views.animate._frame_figure(m)
    sim.views.animate.draw_frame(frame, net, prices, m, t)
    a, b = _nodes(fig_ax), _nodes(net)
    assert sorted(a) == sorted(b) == ["buyer", "lender", "miner", "neocloud"]
    ratio = (points_per_unit(net) / points_per_unit(fig_ax)) ** 2
    assert 0.2 < ratio < 0.5  # the frame is smaller: smaller markers, same proportions
    for kind in a:
        np.testing.assert_array_equal(a[kind].get_offsets(), b[kind].get_offsets())
        np.testing.assert_array_equal(a[kind].get_facecolors(), b[kind].get_facecolors())
        np.testing.assert_allclose(b[kind].get_sizes(), ratio * a[kind].get_sizes())
    # month 8: the lenders failed by then (fewer than by month 12: the state is month 8's)
    n8 = _failures_by(m, t)
    assert 0 < n8 < _failures_by(m, m.cfg.months)
    assert (node_states(m, t)[: m.lenders.n] == FAILED_LENDER).sum() == n8
    assert fig_ax.get_title() == net.get_title()
    names = {tx.get_text() for tx in fig_ax.texts}
    assert "L0" in names and "L0" not in {tx.get_text() for tx in net.texts}  # too small there
    assert f"month {t} of 12" in frame.get_suptitle()


def test_layout_is_computed_once_per_model(monkeypatch):
    m = LiquidationModel(Scenario(months=2)).run()
    calls = []
    real = sim.views.plots.network_layout
    monkeypatch.setattr(sim.views.plots, "network_layout", lambda mm: calls.append(1) or real(mm))
    fig = new_figure(6, 5, layout=None)
    ax = fig.add_subplot()
    for t in range(3):
        ax.clear()
        draw_network(ax, m, t)
    assert calls == [1]


def test_network_month_argument(baseline):
    fig = network_figure(baseline, month=0)
    assert "network at month 0 " in fig.get_suptitle()
