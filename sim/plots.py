"""Figures of a finished run, drawn with matplotlib's object-oriented API on the Agg canvas.

Nothing here touches pyplot or the global backend: every builder returns a fresh
:class:`matplotlib.figure.Figure`, so an interactive session keeps its own backend and the
browser app can embed the same figures. The core never imports this module.

Builders (one code path per figure; :func:`write_figures` saves them all as PNG):

* :func:`price_figure` -- ``price_vs_fundamental.png``: price index against value in best use
  per GPU generation, salvage floor dotted, months with forced sales shaded;
* :func:`defaults_figure` -- ``defaults_by_type.png``: new borrower defaults per month by type
  (stacked bars), cumulative defaults and lender failures on a twin axis;
* :func:`losses_figure` -- ``cumulative_losses.png``: cumulative write-offs, recoveries and
  credit losses in $ millions;
* :func:`fire_sales_figure` -- ``fire_sales.png``: units sold per month and the fire-sale
  discount to fundamental value in months with forced sales;
* :func:`network_figure` -- ``network_worst_month.png``: the lending and funding network at
  the month of the largest new credit loss (:func:`worst_month`), nodes coloured by state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

__all__ = [
    "FIGURES",
    "KIND_MARKERS",
    "dollars",
    "marker_areas",
    "new_figure",
    "defaults_figure",
    "fire_sales_figure",
    "losses_figure",
    "network_figure",
    "network_layout",
    "price_figure",
    "worst_month",
    "write_figures",
]

DPI = 110
MONTH_LABEL = "month (0 = Dec 2025)"
STATE_COLOURS = ("#2ca02c", "#ff9f1c", "#d62728")  # healthy, distressed, failed/defaulted
STATE_LABELS = ("healthy", "distressed (borrower) /\ndeleveraging (lender)",
                "defaulted (borrower) /\nfailed (lender)")
KIND_MARKERS = {"lender": "s", "miner": "^", "neocloud": "o", "buyer": "D"}
LOAN_GREY = "#9a9a9a"
FUNDING_COLOUR = "#1f3b73"


def _months(model) -> np.ndarray:
    return np.arange(len(model.rec["price"]))


def dollars(x: float, _pos=None) -> str:
    """Tick label for a dollar amount: $950, $12k, $1.5M."""
    a = abs(x)
    if a >= 1e6:
        return f"${x / 1e6:.3g}M"
    if a >= 1e3:
        return f"${x / 1e3:.3g}k"
    return f"${x:.0f}"


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
    floor_share = model.cfg.buyers.salvage_floor
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
        ax.axhline(floor_share * env.list_price[g], color="0.3", lw=1.2, ls=":",
                   label=f"salvage floor ({floor_share:.0%} of list)")
        ax.set_title(f"{env.names[g]}  (list {dollars(env.list_price[g])}, "
                     f"{forced.sum():,} units forced)", fontsize=10)
        ax.yaxis.set_major_formatter(FuncFormatter(dollars))
        top = np.nanmax(np.r_[price, fund, floor_share * env.list_price[g], 1.0])
        ax.set_ylim(-0.03 * top, 1.06 * top)  # a value of 0 stays visible above the axis
        ax.set_xlim(t[0], t[-1])
        ax.grid(alpha=0.3)
        ax.set_ylabel("$ per GPU")
    for ax in axes[len(gens):]:
        ax.set_axis_off()
    for ax in axes[max(len(gens) - ncols, 0): len(gens)]:
        ax.set_xlabel(MONTH_LABEL)
        ax.xaxis.set_tick_params(labelbottom=True)
    handles = [Line2D([], [], color="#1f77b4", lw=1.8, label="price index (clearing price "
                      "or best bid)"),
               Line2D([], [], color="#2ca02c", lw=1.4, ls="--",
                      label="value in best use (fundamental)"),
               Line2D([], [], color="0.3", lw=1.2, ls=":",
                      label=f"salvage floor ({floor_share:.0%} of list price)"),
               Patch(color="#d62728", alpha=0.15, label="months with forced sales")]
    if len(gens) < len(axes):  # a spare panel holds the legend
        axes[len(gens)].legend(handles=handles, loc="center", frameon=False, fontsize=10)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle(f"{model.cfg.name}: GPU price index vs value in best use, by generation",
                 fontsize=13)
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
    ax.set_xlabel(MONTH_LABEL)
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
    tw.step(t, rec["lender_failures"], where="post", color="#d62728", lw=2.0,
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
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=9, framealpha=0.9)
    n_b, n_l = model.borrowers.n, model.lenders.n
    ax.set_title(f"{model.cfg.name}: borrower defaults and lender failures "
                 f"({n_b} borrowers, {n_l} lenders)", fontsize=12)
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
        ax.plot(t, y, color=colour, lw=2.0, ls=ls, label=f"{label}: ${y[-1]:,.1f}M")
    ax.fill_between(t, 0, rec["credit_losses"] / 1e6, color="#d62728", alpha=0.12, lw=0)
    ax.set_xlabel(MONTH_LABEL)
    ax.set_ylabel("cumulative, $ millions")
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(bottom=min(0.0, float(rec["credit_losses"].min()) / 1e6))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax.set_title(f"{model.cfg.name}: lenders' cumulative write-offs, recoveries and credit "
                 "losses", fontsize=12)
    return fig


# --------------------------------------------------------------------------- 4. fire sales
def fire_sales_figure(model) -> Figure:
    """Units sold per month (top) and the fire-sale discount to value in best use (bottom)."""
    rec, names = model.rec, model.env.names
    t = _months(model)
    fig = new_figure(12.5, 7.5)
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=(1.15, 1))
    series = (("volume", "all units sold", "#1f77b4", "-", 2.0),
              ("forced_volume", "forced sales by lenders", "#d62728", "-", 1.6),
              ("salvage", "bought by the salvage sink", "#8c564b", "--", 1.4),
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
    bot.set_xlabel(MONTH_LABEL)
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
    fig.suptitle(f"{model.cfg.name}: fire sales", fontsize=13)
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


def network_figure(model, month: int | None = None) -> Figure:
    """The lending and funding network at ``month`` (default: :func:`worst_month`).

    Node colour: state at that month from ``model.panel["state"]``; marker: agent kind; marker
    area ~ sqrt(``model.panel["size"]``), scaled within each kind. Loan edges are the facility
    shares of the loan book (lender -> borrower; a loan written off stays drawn, faded); funding
    edges are the lender -> lender funding network at t0 (its shape never changes).
    """
    t = worst_month(model) if month is None else int(month)
    nl, nb, nk = model.lenders.n, model.borrowers.n, model.buyers.n
    pos = network_layout(model)
    state = np.asarray(model.panel["state"][t], dtype=int)
    size = np.asarray(model.panel["size"][t], dtype=float)
    fig = new_figure(12.5, 8.4)
    ax, lax = fig.subplots(1, 2, width_ratios=(5.0, 1.4))
    lax.set_axis_off()  # the legends' column
    ax.set_aspect("equal")
    ax.set_axis_off()

    L = model.loans
    term = ~np.asarray(L.revolver, bool)
    pairs = np.unique(np.c_[L.lender[term], L.borrower[term]], axis=0)
    if len(pairs):
        b_state = state[nl + pairs[:, 1]]
        segs = np.stack([pos[pairs[:, 0]], pos[nl + pairs[:, 1]]], axis=1)
        live = b_state != 2
        ax.add_collection(LineCollection(segs[live], colors=LOAN_GREY, linewidths=0.45,
                                         alpha=0.45, zorder=1))
        ax.add_collection(LineCollection(segs[~live], colors="#d62728", linewidths=0.45,
                                         alpha=0.25, linestyles=":", zorder=1))
    debtor, creditor = np.nonzero(model.interbank0 > 0)
    for i, j in zip(debtor.tolist(), creditor.tolist(), strict=True):
        ax.annotate("", xy=pos[i], xytext=pos[j], zorder=2,
                    arrowprops={"arrowstyle": "-|>", "color": FUNDING_COLOUR, "lw": 0.9,
                                "alpha": 0.75, "mutation_scale": 9, "shrinkA": 7,
                                "shrinkB": 9, "connectionstyle": "arc3,rad=0.2"})

    colours = np.array(STATE_COLOURS)[np.clip(state, 0, 2)]
    groups = [("lender", np.arange(nl), 170, 560, 1.4)]
    kinds = np.asarray(model.borrowers.kind)
    for code, name in enumerate(("miner", "neocloud")):
        groups.append((name, nl + np.flatnonzero(kinds == code), 18, 90, 0.4))
    groups.append(("buyer", nl + nb + np.arange(nk), 25, 160, 0.6))
    for kind, idx, smin, smax, lw in groups:
        if len(idx) == 0:
            continue
        ax.scatter(pos[idx, 0], pos[idx, 1], s=marker_areas(size[idx], smin, smax),
                   c=colours[idx], marker=KIND_MARKERS[kind], edgecolors="black",
                   linewidths=lw, zorder=3, gid=kind)
    for i in range(nl):
        ax.text(pos[i, 0], pos[i, 1], model.lender_agents[i].name, ha="center", va="center",
                fontsize=6.5, fontweight="bold", color="white" if state[i] != 1 else "black",
                zorder=4)
    buyer_types = np.asarray(model.buyers.type)
    for name in dict.fromkeys(buyer_types.tolist()):
        idx = nl + nb + np.flatnonzero(buyer_types == name)
        ax.text(pos[idx, 0].max() + 0.22, pos[idx, 1].mean(), f"{name}\n({len(idx)})",
                ha="left", va="center", fontsize=8, color="0.2")
    ax.set_xlim(-2.75, 4.45)
    ax.set_ylim(-2.75, 2.75)

    state_handles = [Patch(facecolor=c, edgecolor="black", label=lab)
                     for c, lab in zip(STATE_COLOURS, STATE_LABELS, strict=True)]
    kind_handles = [Line2D([], [], ls="none", marker=KIND_MARKERS[k], ms=ms, mfc="white",
                           mec="black", label=lab)
                    for k, ms, lab in (("lender", 10, f"lender ({nl}, inner circle)"),
                                       ("miner", 7, "miner (outer ring)"),
                                       ("neocloud", 7, "neo-cloud (outer ring)"),
                                       ("buyer", 7, f"secondary buyer ({nk})"))]
    edge_handles = [Line2D([], [], color=LOAN_GREY, lw=1.2, label="loan (lender -> borrower)"),
                    Line2D([], [], color="#d62728", lw=1.2, ls=":", alpha=0.6,
                           label="loan to a defaulted borrower"),
                    Line2D([], [], color=FUNDING_COLOUR, lw=1.2, marker=">", ms=5,
                           label="funding (lender -> lender)")]
    side = {"loc": "upper left", "fontsize": 9, "title_fontsize": 10, "frameon": False,
            "alignment": "left", "borderaxespad": 0.0}
    for handles, title, y in ((state_handles, "state at this month", 1.0),
                              (kind_handles, "kind (marker area ~ sqrt size,\nscaled per kind)",
                               0.68),
                              (edge_handles, "edges", 0.33)):
        lax.add_artist(lax.legend(handles=handles, title=title, bbox_to_anchor=(0.0, y),
                                  **side))
    bs, ls_ = state[nl: nl + nb], state[:nl]
    new_loss = (model.rec["credit_losses"][t]
                - (model.rec["credit_losses"][t - 1] if t > 0 else 0.0)) / 1e6
    fig.suptitle(f"{model.cfg.name}: lending and funding network at month {t} "
                 f"(new credit loss ${new_loss:,.1f}M)", fontsize=13)
    ax.set_title(f"borrowers: {np.sum(bs == 0)} healthy, {np.sum(bs == 1)} distressed, "
                 f"{np.sum(bs == 2)} defaulted   |   lenders: {np.sum(ls_ == 0)} healthy, "
                 f"{np.sum(ls_ == 1)} deleveraging, {np.sum(ls_ == 2)} failed", fontsize=10)
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
