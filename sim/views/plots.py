"""Figures of a finished run, drawn with matplotlib's object-oriented API on the Agg canvas.

Nothing here touches pyplot or the global backend: every builder returns a fresh
:class:`matplotlib.figure.Figure`, so an interactive session keeps its own backend and the
browser app can embed the same figures. The core never imports this module.

Builders (one code path per figure; :func:`write_figures` saves them all as PNG):

* :func:`price_figure` -- ``price_vs_fundamental.png``: price index against value in best use
  per GPU generation, scrap value (or salvage floor) dotted, months with forced sales shaded;
* :func:`defaults_figure` -- ``defaults_by_type.png``: new borrower defaults per month by type
  (stacked bars), cumulative defaults and lender failures on a twin axis;
* :func:`losses_figure` -- ``cumulative_losses.png``: cumulative write-offs, recoveries and
  credit losses in $ millions;
* :func:`fire_sales_figure` -- ``fire_sales.png``: units sold per month and the fire-sale
  discount to fundamental value in months with forced sales;
* :func:`network_figure` -- ``network_worst_month.png``: the lending and funding network at
  the month of the largest new credit loss (:func:`worst_month`), nodes coloured by state.
  It is drawn by :func:`draw_network`, which also draws every frame of the animation and the
  app's network panel (:mod:`sim.views.animate`), so all three show the same layout and colours.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from agents.borrower import BorrowerStatus
from agents.buyer import floor_price
from agents.lender import LenderStatus
from sim.core.config import changed_keys
from sim.core.environment import month_label

__all__ = [
    "FIGURES",
    "KIND_MARKERS",
    "NODE_COLOURS",
    "NODE_LABELS",
    "dollars",
    "draw_network",
    "marker_areas",
    "node_states",
    "new_figure",
    "defaults_figure",
    "fire_sales_figure",
    "losses_figure",
    "network_figure",
    "network_geometry",
    "network_layout",
    "points_per_unit",
    "png_bytes",
    "price_figure",
    "worst_month",
    "write_figures",
]

DPI = 110
def month_axis(cfg) -> str:
    """The x-axis label of a month axis: ``'month (0 = Dec 2025)'`` (the scenario's start)."""
    return f"month (0 = {month_label(0, cfg.start)})"
# a legend under its axes (constrained layout makes room): it can never cover a curve
LEGEND_BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.13), "fontsize": 9,
                "frameon": False}
# node colours of the network drawing, indexed by node_states(): healthy, distressed borrower /
# deleveraging lender, defaulted borrower, failed lender
NODE_COLOURS = ("#2ca02c", "#ff9f1c", "#d62728", "#2b2b2b")
NODE_LABELS = ("healthy", "distressed (borrower) /\ndeleveraging (lender)",
               "defaulted (borrower)", "failed (lender)")
FAILED_LENDER = 3
KIND_MARKERS = {"lender": "s", "miner": "^", "neocloud": "o", "buyer": "D"}
# marker area bounds (pt^2) at REF_POINTS_PER_UNIT and marker edge width (pt), per kind
NODE_SIZES = {"lender": (170.0, 560.0, 1.4), "miner": (18.0, 90.0, 0.4),
              "neocloud": (18.0, 90.0, 0.4), "buyer": (25.0, 160.0, 0.6)}
REF_POINTS_PER_UNIT = 90.0  # about the scale of network_figure's 12.5 x 8.4 in drawing
NAMES_MIN_SCALE = 0.6  # lender names only on squares at least ~0.77 of their reference side
NETWORK_XLIM, NETWORK_YLIM = (-2.75, 4.45), (-2.75, 2.75)  # layout units; buyers at x = 3.5
ARROW_RAD, ARROW_GAP, ARROW_HEAD = 0.2, 0.13, (0.09, 0.035)  # funding arrows, layout units
LOAN_GREY = "#9a9a9a"
FUNDING_COLOUR = "#1f3b73"


def _months(model) -> np.ndarray:
    return np.arange(len(model.rec["price"]))


def dollars(x: float, _pos=None) -> str:
    """Tick label for a dollar amount: $950, $12k, $1.5M, $1.2B, −$3M; never in e-notation."""
    a, sign = abs(float(x)), "\u2212" if x < 0 else ""
    if not np.isfinite(a):
        return ""
    if round(a) < 1000:
        return f"{sign}${a:.0f}" if round(a) else "$0"
    for scale, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "B"), (1e12, "T")):
        v = float(f"{a / scale:.3g}")  # 3 significant digits, rounded first
        if v < 1000 or suffix == "T":
            text = f"{v:,.0f}" if v >= 100 else f"{v:g}"
            return f"{sign}${text}{suffix}"
    raise AssertionError("unreachable")


def run_label(model, limit: int = 4) -> str:
    """The run a figure shows: ``crypto_winter · seed 7 · 24 months · policy.repo.enabled =
    true`` (the keys that differ from the scenario it is named after, at most ``limit``)."""
    cfg = model.cfg
    parts = [cfg.name, f"seed {cfg.seed}", f"{cfg.months} months"]
    changed = changed_keys(cfg)
    shown = [f"{k} = {_short(v)}" for k, v in list(changed.items())[:limit]]
    if len(changed) > limit:
        shown.append(f"+{len(changed) - limit} more overrides")
    return " · ".join(parts + shown)


def _millions(x: float) -> str:
    """``$12.3M``, ``−$4.0M``: millions with one decimal, the sign before the dollar."""
    text = f"${abs(x) / 1e6:,.1f}M"
    return f"\u2212{text}" if x < 0 and text != "$0.0M" else text


def _short(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True in a boolean vector."""
    m = np.r_[False, np.asarray(mask, bool), False].astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist(),
                    strict=True))


def new_figure(width: float, height: float, dpi: int = DPI,
               layout: str | None = "constrained") -> Figure:
    """A Figure on the Agg canvas (no pyplot); constrained layout unless ``layout=None``."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, then cleared. No 'Software' metadata (the matplotlib version),
    so the same figure gives the same bytes under any matplotlib version."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


# --------------------------------------------------------------------------- 1. prices
def price_figure(model) -> Figure:
    """Price index vs fundamental value, one panel per generation that ever had a price.

    Months before a generation's launch (no market yet) are left blank (NaN).
    """
    rec, env = model.rec, model.env
    t = _months(model)
    gens = [g for g in range(model.n_gen) if np.any(rec["price"][:, g] != 0)]
    ncols = min(3, max(len(gens), 1))
    nrows = max(1, -(-len(gens) // ncols))
    fig = new_figure(4.3 * ncols, 3.2 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    floor, floor_name = _floor(model)
    for ax, g in zip(axes, gens, strict=False):
        live = t >= env.launch[g]
        price = np.where(live, rec["price"][:, g], np.nan)
        fund = np.where(live, rec["fundamental"][:, g], np.nan)
        forced = rec["forced_volume"][:, g]
        for i, (a, b) in enumerate(_runs(forced > 0)):
            ax.axvspan(a - 0.5, b + 0.5, color="#d62728", alpha=0.15, lw=0,
                       label="forced sales" if i == 0 else None)
        ax.plot(t, price, color="#1f77b4", lw=1.8, label="price index", gid="price")
        ax.plot(t, fund, color="#2ca02c", lw=1.4, ls="--", label="value in best use",
                gid="fundamental")
        ax.axhline(floor[g], color="0.3", lw=1.2, ls=":",
                   label=floor_name)
        ax.set_title(f"{env.names[g]}  (list {dollars(env.list_price[g])}, "
                     f"{forced.sum():,} units forced)", fontsize=10)
        ax.yaxis.set_major_formatter(FuncFormatter(dollars))
        top = np.nanmax(np.r_[price, fund, floor[g], 1.0])
        ax.set_ylim(-0.03 * top, 1.06 * top)  # a value of 0 stays visible above the axis
        ax.set_xlim(t[0], t[-1])
        ax.grid(alpha=0.3)
        ax.set_ylabel("$ per GPU")
    for ax in axes[len(gens):]:
        ax.set_axis_off()
    for ax in axes[max(len(gens) - ncols, 0): len(gens)]:
        ax.set_xlabel(month_axis(model.cfg))
        ax.xaxis.set_tick_params(labelbottom=True)
    handles = [Line2D([], [], color="#1f77b4", lw=1.8, label="price index (clearing price "
                      "or best bid)"),
               Line2D([], [], color="#2ca02c", lw=1.4, ls="--",
                      label="value in best use (fundamental)"),
               Line2D([], [], color="0.3", lw=1.2, ls=":", label=floor_name),
               Patch(color="#d62728", alpha=0.15, label="months with forced sales")]
    if len(gens) < len(axes):  # a spare panel holds the legend
        axes[len(gens)].legend(handles=handles, loc="center", frameon=False, fontsize=10)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle(f"GPU price index vs value in best use, by generation\n{run_label(model)}",
                 fontsize=12)
    return fig


# --------------------------------------------------------------------------- 2. defaults
def defaults_figure(model) -> Figure:
    """New defaults per month by borrower type; cumulative defaults and lender failures."""
    rec = model.rec
    t = _months(model)
    miner, neo = rec["defaults_miner"], rec["defaults_neocloud"]
    fig = new_figure(10, 5.2)
    ax = fig.add_subplot()
    ax.bar(t, miner, width=0.8, color="#e377c2", label="miners (new defaults)")
    ax.bar(t, neo, width=0.8, bottom=miner, color="#17becf", label="neo-clouds (new defaults)")
    ax.set_xlabel(month_axis(model.cfg))
    ax.set_ylabel("new borrower defaults per month (count)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    top = max(1, int((miner + neo).max()))
    ax.set_ylim(-0.02 * top, 1.15 * top)
    ax.set_xlim(t[0] - 0.6, t[-1] + 0.6)
    ax.grid(axis="y", alpha=0.3)
    tw = ax.twinx()
    tw.plot(t, np.cumsum(miner), color="#a0306e", lw=1.8,
            label=f"miners, cumulative ({miner.sum()})")
    tw.plot(t, np.cumsum(neo), color="#0e7c8a", lw=1.8,
            label=f"neo-clouds, cumulative ({neo.sum()})")
    tw.step(t, rec["lender_failures"], where="post", color=NODE_COLOURS[FAILED_LENDER], lw=2.0,
            label=f"lenders failed, cumulative ({rec['lender_failures'][-1]})")
    tw.step(t, rec["lenders_deleveraging"], where="post", color="#ff7f0e", lw=1.4, ls="--",
            label="lenders deleveraging (current)")
    tw.set_ylabel("cumulative count (borrowers / lenders)")
    tw.yaxis.set_major_locator(MaxNLocator(integer=True))
    top = max(1, int(max(np.cumsum(miner)[-1], np.cumsum(neo)[-1],
                         rec["lender_failures"].max(), rec["lenders_deleveraging"].max())))
    tw.set_ylim(-0.02 * top, 1.15 * top)  # same zero as the bars; zero lines stay visible
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = tw.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, **LEGEND_BELOW, ncols=2)  # outside: never over a curve
    n_b, n_l = model.borrowers.n, model.lenders.n
    ax.set_title(f"Borrower defaults and lender failures ({n_b} borrowers, {n_l} lenders)\n"
                 f"{run_label(model)}", fontsize=11)
    return fig


# --------------------------------------------------------------------------- 3. losses
def losses_figure(model) -> Figure:
    """Cumulative write-offs (exposure at default), recoveries and credit losses, $ millions."""
    rec = model.rec
    t = _months(model)
    fig = new_figure(9, 5)
    ax = fig.add_subplot()
    series = (("writeoffs", "write-offs (exposure at default)", "#7f7f7f", "-"),
              ("recoveries", "recoveries (seized cash, GPU sales)", "#2ca02c", "--"),
              ("credit_losses", "credit losses (write-offs - recoveries)", "#d62728", "-"))
    for key, label, colour, ls in series:
        y = rec[key] / 1e6
        ax.plot(t, y, color=colour, lw=2.0, ls=ls, label=f"{label}: {_millions(y[-1] * 1e6)}")
    ax.fill_between(t, 0, rec["credit_losses"] / 1e6, color="#d62728", alpha=0.12, lw=0)
    ax.set_xlabel(month_axis(model.cfg))
    ax.set_ylabel("cumulative, $ millions")
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(bottom=min(0.0, float(rec["credit_losses"].min()) / 1e6))
    ax.grid(alpha=0.3)
    ax.legend(**LEGEND_BELOW, ncols=1)  # outside: never over a curve
    ax.set_title(f"Lenders' cumulative write-offs, recoveries and credit losses\n"
                 f"{run_label(model)}", fontsize=11)
    return fig


# --------------------------------------------------------------------------- 4. fire sales
def _floor(model) -> tuple[np.ndarray, str]:
    """(prices, legend) of the level below which no GPU sells (``agents.buyer.floor_price``):
    the outside demand's scrap value (a share of the new-unit price) when it is on, else the
    salvage floor (a share of the list price)."""
    od = model.cfg.buyers.outside_demand
    floor = floor_price(model.cfg.buyers, model.env)
    if od.enabled:
        return floor, f"scrap value ({od.scrap:.0%} of new price)"
    return floor, f"salvage floor ({model.cfg.buyers.salvage_floor:.0%} of list price)"


def fire_sales_figure(model) -> Figure:
    """Units sold per month (top) and the fire-sale discount to value in best use (bottom)."""
    rec, names = model.rec, model.env.names
    t = _months(model)
    fig = new_figure(12.5, 7.5)
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=(1.15, 1))
    outside = model.cfg.buyers.outside_demand.enabled
    series = (("volume", "all units sold", "#1f77b4", "-", 2.0),
              ("forced_volume", "forced sales by lenders", "#d62728", "-", 1.6),
              ("salvage", "bought by out-of-sector buyers" if outside
               else "bought by the salvage sink", "#8c564b", "--", 1.4),
              ("overhang", "overhang (forced units left unsold)", "#9467bd", ":", 1.6))
    for key, label, colour, ls, lw in series:
        y = rec[key].sum(axis=1)
        top.plot(t, y, color=colour, ls=ls, lw=lw, drawstyle="steps-mid",
                 label=f"{label} (total {y.sum():,})")
    top.set_ylabel("GPU units per month")
    top.yaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:,.0f}"))
    top.grid(alpha=0.3)
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 9,
               "frameon": False}
    top.legend(**outside)
    top.set_title("Units sold in the monthly call auctions (all generations)", fontsize=11)

    forced, price, fund = rec["forced_volume"], rec["price"], rec["fundamental"]
    ok = (forced > 0) & (fund > 0)
    disc = np.divide(fund - price, fund, out=np.full(fund.shape, np.nan), where=ok)
    markers = "oDs^v<>P*X"
    shown = [g for g in range(model.n_gen) if ok[:, g].any()]
    for k, g in enumerate(shown):
        m = ok[:, g]
        bot.plot(t[m], disc[m, g], ls="none", marker=markers[k % len(markers)], ms=7,
                 label=f"{names[g]} ({forced[:, g].sum():,} units forced)", gid=names[g])
    no_value = [names[g] for g in range(model.n_gen)
                if ((forced[:, g] > 0) & (fund[:, g] <= 0)).any()]
    bot.axhline(0.0, color="0.3", lw=1.0)
    bot.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    bot.set_ylabel("discount 1 - price / value in best use")
    bot.set_xlabel(month_axis(model.cfg))
    bot.set_xlim(t[0] - 0.6, t[-1] + 0.6)
    bot.grid(alpha=0.3)
    note = "below 0 %: forced sales cleared\nabove value in best use"
    if no_value:
        note += f"\nnot shown (value in best use = 0):\n{', '.join(no_value)}"
    if shown:
        bot.legend(**outside, title="generation", title_fontsize=9)
        bot.text(1.01, 0.0, note, transform=bot.transAxes, ha="left", va="bottom", fontsize=8,
                 color="0.3")
    else:
        bot.text(0.5, 0.5, "no forced sales with a positive value in best use\n" + note,
                 transform=bot.transAxes, ha="center", va="center", fontsize=10, color="0.3")
        bot.set_ylim(-1, 1)
    bot.set_title("Fire-sale discount in months with forced sales, by generation", fontsize=11)
    fig.suptitle(f"Fire sales\n{run_label(model)}", fontsize=12)
    return fig


# --------------------------------------------------------------------------- 5. network
def worst_month(model) -> int:
    """The month with the largest new credit loss; the last month if losses never rose."""
    cl = np.asarray(model.rec["credit_losses"], dtype=float)
    d = np.diff(cl)
    if len(d) == 0 or d.max() <= 0:
        return len(cl) - 1
    return int(np.argmax(d)) + 1


def network_layout(model) -> np.ndarray:
    """(x, y) of every agent in ``model.panel_agents`` order (lenders, borrowers, buyers).

    Deterministic: lenders evenly on an inner circle (radius 1); borrowers evenly on an outer
    ring (radius 2.3), ordered by their lead lender so each sits near its lead; buyers in a
    column to the right (x = 3.5), grouped by type.
    """
    nl, nb, nk = model.lenders.n, model.borrowers.n, model.buyers.n
    pos = np.zeros((nl + nb + nk, 2))
    a_l = np.pi / 2 - 2 * np.pi * np.arange(nl) / max(nl, 1)
    pos[:nl] = np.c_[np.cos(a_l), np.sin(a_l)]
    if nb:
        lead = np.asarray(model.lead)
        order = np.lexsort((np.arange(nb), model.borrowers.kind, lead))
        rank = np.empty(nb, dtype=float)
        rank[order] = np.arange(nb)
        shift = np.pi / max(nl, 1)  # centre lender 0's borrowers on lender 0
        a_b = np.pi / 2 + shift - 2 * np.pi * (rank + 0.5) / nb
        pos[nl: nl + nb] = 2.3 * np.c_[np.cos(a_b), np.sin(a_b)]
    if nk:
        y = np.linspace(2.2, -2.2, nk) if nk > 1 else np.zeros(1)
        pos[nl + nb:] = np.c_[np.full(nk, 3.5), y]
    return pos


def marker_areas(size: np.ndarray, smin: float, smax: float) -> np.ndarray:
    """Marker area (pt^2) growing with the square root of the balance-sheet size."""
    root = np.sqrt(np.maximum(size, 0.0))
    top = root.max() if len(root) else 0.0
    return smin + (smax - smin) * (root / top if top > 0 else root)


def node_states(model, t: int) -> np.ndarray:
    """Index into :data:`NODE_COLOURS` of every panel agent at month ``t``.

    ``model.panel["state"][t]`` (the codes of ``BorrowerStatus`` and ``LenderStatus``: 0 healthy,
    1 distressed borrower / deleveraging lender, 2 defaulted borrower / failed lender), except
    that a failed lender gets its own category, :data:`FAILED_LENDER` (3), so it never looks like
    a defaulted borrower.
    """
    state = np.clip(np.asarray(model.panel["state"][t], dtype=np.int64), 0, 2)
    nl = model.lenders.n
    state[:nl][state[:nl] == LenderStatus.FAILED] = FAILED_LENDER
    return state


def _funding_arrows(pos: np.ndarray, creditor: np.ndarray, debtor: np.ndarray,
                    samples: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Curved funding arrows creditor -> debtor in layout units: (polylines, arrowheads).

    Each edge is the quadratic Bezier curve of matplotlib's ``arc3,rad=0.2`` connection (control
    point at the chord's midpoint moved by 0.2 x the chord, to the right of the travel
    direction), so the two directions of a mutual funding pair do not overlap. The curve is cut
    :data:`ARROW_GAP` short of both centres so the arrow starts and ends outside the squares;
    the head is a triangle at the cut end. Computed once per model (the funding network is the
    t0 one); drawing it is then one LineCollection and one PolyCollection per frame.
    """
    n = len(creditor)
    if n == 0:
        return np.zeros((0, samples, 2)), np.zeros((0, 3, 2))
    p0, p2 = pos[creditor], pos[debtor]
    d = p2 - p0
    p1 = (p0 + p2) / 2 + ARROW_RAD * np.c_[d[:, 1], -d[:, 0]]

    def bezier(u: np.ndarray) -> np.ndarray:  # u: (n, k) -> (n, k, 2)
        u = u[..., None]
        return ((1 - u) ** 2 * p0[:, None] + 2 * u * (1 - u) * p1[:, None]
                + u ** 2 * p2[:, None])

    u = np.broadcast_to(np.linspace(0.0, 1.0, 4 * samples), (n, 4 * samples))
    pts = bezier(u)
    from_start = np.linalg.norm(pts - p0[:, None], axis=2)
    from_end = np.linalg.norm(pts - p2[:, None], axis=2)
    first = np.argmax(from_start >= ARROW_GAP, axis=1)  # first sample outside the creditor
    last = pts.shape[1] - 1 - np.argmax((from_end >= ARROW_GAP)[:, ::-1], axis=1)
    u0, u1 = u[0, first], u[0, np.maximum(last, first)]
    curves = bezier(u0[:, None] + (u1 - u0)[:, None] * np.linspace(0.0, 1.0, samples))
    tip = curves[:, -1]
    back = tip - curves[:, -2]
    unit = back / np.maximum(np.linalg.norm(back, axis=1, keepdims=True), 1e-12)
    normal = np.c_[-unit[:, 1], unit[:, 0]]
    base = tip - ARROW_HEAD[0] * unit
    heads = np.stack([tip, base + ARROW_HEAD[1] * normal, base - ARROW_HEAD[1] * normal], 1)
    return curves, heads


def network_geometry(model) -> SimpleNamespace:
    """What does not change from month to month, computed on first use and kept on the model:
    node positions (:func:`network_layout`), the distinct lender -> borrower term-loan pairs and
    the funding arrows (:func:`_funding_arrows`)."""
    geo = getattr(model, "_liqsim_network", None)
    if geo is None:
        pos = network_layout(model)
        nl = model.lenders.n
        L = model.loans
        term = ~np.asarray(L.revolver, bool)
        pairs = np.unique(np.c_[L.lender[term], L.borrower[term]].reshape(-1, 2), axis=0)
        debtor, creditor = np.nonzero(model.interbank0 > 0)
        curves, heads = _funding_arrows(pos, creditor, debtor)
        geo = SimpleNamespace(pos=pos, pairs=pairs,
                              loan_segments=np.stack([pos[pairs[:, 0]], pos[nl + pairs[:, 1]]],
                                                     axis=1),
                              funding_curves=curves, funding_heads=heads)
        model._liqsim_network = geo
    return geo


def points_per_unit(ax) -> float:
    """Typographic points per layout unit once ``ax`` shows :data:`NETWORK_XLIM` x
    :data:`NETWORK_YLIM` at equal aspect (from the Axes' position and the figure's size)."""
    box = ax.get_position(original=True)
    w, h = ax.figure.get_size_inches()
    return 72.0 * min(box.width * w / (NETWORK_XLIM[1] - NETWORK_XLIM[0]),
                      box.height * h / (NETWORK_YLIM[1] - NETWORK_YLIM[0]))


def _network_legends(model) -> list[tuple[str, list]]:
    """(title, handles) of the network's three legends: node state, agent kind, edges."""
    nl, nk = model.lenders.n, model.buyers.n
    states = [Patch(facecolor=c, edgecolor="black", label=lab)
              for c, lab in zip(NODE_COLOURS, NODE_LABELS, strict=True)]
    kinds = [Line2D([], [], ls="none", marker=KIND_MARKERS[k], ms=ms, mfc="white",
                    mec="black", label=lab)
             for k, ms, lab in (("lender", 9, f"lender ({nl}, inner circle)"),
                                ("miner", 7, "miner (outer ring)"),
                                ("neocloud", 7, "neo-cloud (outer ring)"),
                                ("buyer", 7, f"secondary buyer ({nk})"))]
    edges = [Line2D([], [], color=LOAN_GREY, lw=1.2, label="loan (lender -> borrower)"),
             Line2D([], [], color=NODE_COLOURS[BorrowerStatus.DEFAULTED], lw=1.2, ls=":", alpha=0.6,
                    label="loan to a defaulted borrower"),
             Line2D([], [], color=FUNDING_COLOUR, lw=1.2, marker=">", ms=5,
                    label="funding (funder -> funded)")]
    return [("state at this month", states),
            ("kind (marker area ~ sqrt size,\nscaled per kind)", kinds), ("edges", edges)]


def draw_network(ax, model, t: int, *, legend_ax=None) -> None:
    """The lending and funding network at month ``t`` on ``ax``: the one drawing of it, used by
    :func:`network_figure`, the animation's frames and the app's panel.

    Layout: :func:`network_layout` (computed once per model with the funding arrows, see
    :func:`network_geometry`). Node colour: :func:`node_states` (:data:`NODE_COLOURS`: green
    healthy, orange distressed borrower or deleveraging lender, red defaulted borrower,
    near-black failed lender); marker: :data:`KIND_MARKERS` (lender square, miner triangle,
    neo-cloud circle, buyer diamond); marker area ~ sqrt(``model.panel["size"][t]``), scaled
    within each kind between the bounds of :data:`NODE_SIZES`. Those bounds are for
    :data:`REF_POINTS_PER_UNIT`; on a smaller or larger Axes every area is multiplied by
    ``(points_per_unit(ax) / REF_POINTS_PER_UNIT) ** 2``, so the picture keeps its proportions.
    Lender names are written on the squares when that factor is at least
    :data:`NAMES_MIN_SCALE` (smaller squares could not hold them).

    Edges: term-loan facilities lender -> borrower in grey (dotted red once the borrower has
    defaulted; the exposure stays drawn), t0 funding lender -> lender as curved blue arrows from
    funder to funded lender (the funding network's shape never changes).

    Legend: with ``legend_ax``, three titled legends stacked in that (axis-less) Axes; otherwise
    one compact legend with the same entries below ``ax``.
    """
    geo = network_geometry(model)
    pos = geo.pos
    nl, nb, nk = model.lenders.n, model.borrowers.n, model.buyers.n
    state = node_states(model, t)
    size = np.asarray(model.panel["size"][t], dtype=float)
    scale = (points_per_unit(ax) / REF_POINTS_PER_UNIT) ** 2
    ax.set_xlim(*NETWORK_XLIM)
    ax.set_ylim(*NETWORK_YLIM)
    ax.set_aspect("equal")
    ax.set_axis_off()

    dead = state[nl + geo.pairs[:, 1]] == BorrowerStatus.DEFAULTED
    ax.add_collection(LineCollection(geo.loan_segments[~dead], colors=LOAN_GREY,
                                     linewidths=0.45, alpha=0.45, zorder=1, gid="loans"))
    ax.add_collection(LineCollection(geo.loan_segments[dead],
                                     colors=NODE_COLOURS[BorrowerStatus.DEFAULTED],
                                     linewidths=0.45, alpha=0.25, linestyles=":", zorder=1,
                                     gid="loans_defaulted"))
    ax.add_collection(LineCollection(geo.funding_curves, colors=FUNDING_COLOUR, linewidths=0.9,
                                     alpha=0.75, zorder=2, gid="funding"))
    ax.add_collection(PolyCollection(geo.funding_heads, facecolors=FUNDING_COLOUR,
                                     edgecolors="none", alpha=0.75, zorder=2,
                                     gid="funding_heads"))

    colours = np.array(NODE_COLOURS)[state]
    kinds = np.asarray(model.borrowers.kind)
    groups = (("lender", np.arange(nl)), ("miner", nl + np.flatnonzero(kinds == 0)),
              ("neocloud", nl + np.flatnonzero(kinds == 1)), ("buyer", nl + nb + np.arange(nk)))
    for kind, idx in groups:
        if len(idx) == 0:
            continue
        smin, smax, lw = NODE_SIZES[kind]
        ax.scatter(pos[idx, 0], pos[idx, 1], s=scale * marker_areas(size[idx], smin, smax),
                   c=colours[idx], marker=KIND_MARKERS[kind], edgecolors="black",
                   linewidths=lw * min(1.0, np.sqrt(scale)), zorder=3, gid=kind)
    if scale >= NAMES_MIN_SCALE:
        for i in range(nl):
            ax.text(pos[i, 0], pos[i, 1], model.lender_agents[i].name, ha="center",
                    va="center", fontsize=6.5, fontweight="bold",
                    color="black" if state[i] == LenderStatus.DELEVERAGING else "white",
                    zorder=4)
    buyer_types = np.asarray(model.buyers.type)
    for name in dict.fromkeys(buyer_types.tolist()):
        idx = nl + nb + np.flatnonzero(buyer_types == name)
        ax.text(pos[idx, 0].max() + 0.22, pos[idx, 1].mean(), f"{name}\n({len(idx)})",
                ha="left", va="center", fontsize=7, color="0.2")

    bs, ls_ = state[nl: nl + nb], state[:nl]
    ax.set_title(f"month {t}: borrowers {np.sum(bs == BorrowerStatus.DISTRESSED)} distressed, "
                 f"{np.sum(bs == BorrowerStatus.DEFAULTED)} defaulted | lenders "
                 f"{np.sum(ls_ == LenderStatus.DELEVERAGING)} deleveraging, "
                 f"{np.sum(ls_ == FAILED_LENDER)} failed",
                 fontsize=float(np.clip(10.0 * np.sqrt(scale), 8.0, 10.0)))
    legends = _network_legends(model)
    if legend_ax is not None:
        side = {"loc": "upper left", "fontsize": 9, "title_fontsize": 10, "frameon": False,
                "alignment": "left", "borderaxespad": 0.0}
        for (title, handles), y in zip(legends, (1.0, 0.64, 0.30), strict=True):
            legend_ax.add_artist(legend_ax.legend(handles=handles, title=title,
                                                  bbox_to_anchor=(0.0, y), **side))
    else:
        handles = [h for _title, hs in legends for h in hs]
        for h in handles:  # one line per entry; the three columns are the three legends
            h.set_label(h.get_label().replace(" /\n", " / "))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=6,
                  frameon=False, ncols=len(legends))


def network_figure(model, month: int | None = None) -> Figure:
    """The lending and funding network at ``month`` (default: :func:`worst_month`), drawn by
    :func:`draw_network` with its legends in a column on the right."""
    t = worst_month(model) if month is None else int(month)
    fig = new_figure(12.5, 8.4, layout=None)  # fixed margins: draw_network reads the Axes' size
    ax, lax = fig.subplots(1, 2, width_ratios=(5.0, 1.4))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.9, wspace=0.04)
    lax.set_axis_off()  # the legends' column
    draw_network(ax, model, t, legend_ax=lax)
    new_loss = (model.rec["credit_losses"][t]
                - (model.rec["credit_losses"][t - 1] if t > 0 else 0.0)) / 1e6
    fig.suptitle(f"Lending and funding network at month {t} (new credit loss "
                 f"{_millions(new_loss * 1e6)})\n{run_label(model)}", fontsize=12)
    return fig


# --------------------------------------------------------------------------- writing
FIGURES: dict[str, Callable[..., Figure]] = {
    "price_vs_fundamental.png": price_figure,
    "defaults_by_type.png": defaults_figure,
    "cumulative_losses.png": losses_figure,
    "fire_sales.png": fire_sales_figure,
    "network_worst_month.png": network_figure,
}


def write_figures(model, outdir: str | Path) -> list[Path]:
    """Draw every figure of :data:`FIGURES` for a finished model; return the PNG paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, build in FIGURES.items():
        fig = build(model)
        path = out / filename
        fig.savefig(path, dpi=DPI)
        fig.clear()
        paths.append(path)
    return paths
