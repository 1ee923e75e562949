"""The app's panels as images, redrawn by blitting so that a Step costs milliseconds, not a second.

Each panel is drawn in full by the same ``draw_*`` function as ``liqsim animate``'s frames
(:mod:`sim.views.animate`, :func:`sim.views.plots.draw_network`), so the pictures are the same.
Drawing a matplotlib figure from scratch costs 50-100 ms of CPU (mostly laying out text: ticks,
titles, legends), six panels 0.3-0.6 s a month. Here each browser session keeps one figure per
panel:

* a **full draw** (the ``draw_*`` function on a cleared Axes) happens at month 0 and when the
  panel's structure changes (a generation launches); when the month's data leave the axes'
  limits, only the limits change (with headroom) and the background is redrawn;
* otherwise the panel's **update** function moves the month's data into the existing artists
  (lines, collections, legend texts), the static background (axes, ticks, grid, titles) is
  restored from a saved copy and only those artists are drawn again (``draw_artist``), then
  the buffer is encoded as JPEG (quality 92: about 1 ms and 60 kB a panel, where PNG took
  about 10 ms and 180 kB, which the browser then also took longer to decode).

The result of an update is the picture a full draw would give, except for the headroom of the
limits; ``tests/views/test_app.py`` compares both.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.path import Path
from matplotlib.transforms import IdentityTransform, TransformedPath
from PIL import Image

from agents.borrower import BorrowerStatus
from agents.buyer import floor_price
from agents.lender import LenderStatus
from sim.views.animate import (
    capacity_generation,
    draw_capacity,
    draw_defaults,
    draw_inventory,
    draw_losses,
    draw_prices,
)
from sim.views.plots import (
    NODE_COLOURS,
    NODE_SIZES,
    REF_POINTS_PER_UNIT,
    draw_network,
    marker_areas,
    network_geometry,
    new_figure,
    node_states,
    points_per_unit,
)

CHART_MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.14, "top": 0.9}
NETWORK_MARGINS = {"left": 0.01, "right": 0.99, "bottom": 0.12, "top": 0.95}
HEADROOM = 2.0  # a full draw leaves this much room above the data for later months
DPI = 90


JPEG_QUALITY = 92


def _image(fig: Figure) -> bytes:
    rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format="jpeg", quality=JPEG_QUALITY)
    return out.getvalue()


class Panel:
    """One panel of one session: ``image(model, t)`` returns the JPEG of month ``t``."""

    def __init__(self, draw: Callable, update: Callable | None, width: float, height: float,
                 margins: dict = CHART_MARGINS):
        self.draw, self.update = draw, update
        self.fig = new_figure(width, height, dpi=DPI, layout=None)
        self.fig.subplots_adjust(**margins)
        self.ax = self.fig.add_subplot()
        self.model = None
        self.t = -1
        self.dynamic: list = []
        self.state: dict = {}
        self.background = None
        self.full_draws = 0
        self.rescales = 0
        self.rescale: tuple[float, float] | None = None

    def image(self, model, t: int) -> bytes:
        fresh = model is not self.model or t < self.t or self.update is None
        self.rescale = None
        if fresh or not self.update(self, model, t):
            self._full(model, t)
        else:
            if self.rescale is not None:  # new limits: redraw the background only
                self.ax.set_ylim(*self.rescale)
                self.fig.canvas.draw()
                self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)
                self.rescales += 1
            self.fig.canvas.restore_region(self.background)
            for a in sorted(self.dynamic, key=lambda a: a.get_zorder()):
                self.ax.draw_artist(a)
        self.model, self.t = model, t
        return _image(self.fig)

    def _full(self, model, t: int) -> None:
        """Draw everything, then keep the background without the dynamic artists."""
        self.ax.cla()
        self.state = {}
        self.draw(self.ax, model, t)
        self.full_draws += 1
        self.dynamic = _after_full.get(self.draw, lambda p, m, t: [])(self, model, t)
        legend = self.ax.get_legend()
        if legend is not None and self.draw in STATIC_LEGENDS:
            # the legend stays in the background, its labels without the month's numbers
            # (drawing a legend costs 10-20 ms, all the lines together well under 1 ms);
            # the numbers are shown beside the panel (panel_values)
            _relabel(self.ax, STATIC_LEGENDS[self.draw](model))
        for a in self.dynamic:
            a.set_animated(True)
        self.fig.canvas.draw()
        self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        if legend is not None and self.draw in STATIC_LEGENDS:
            hole = _around(self.ax.bbox, legend.get_window_extent())
            for a in self.dynamic:
                a.set_clip_path(hole)  # the lines pass under the legend, not over it
        for a in sorted(self.dynamic, key=lambda a: a.get_zorder()):
            self.ax.draw_artist(a)


# ----------------------------------------------------------------------- per-panel updates
def _around(outer, hole) -> TransformedPath:
    """A clip path: the display-space box ``outer`` less the box ``hole``."""
    def ring(b, reverse):
        pts = [(b.x0, b.y0), (b.x1, b.y0), (b.x1, b.y1), (b.x0, b.y1)]
        return (pts[::-1] if reverse else pts) + [(0, 0)]

    codes = [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
    path = Path(ring(outer, False) + ring(hole, True), codes * 2)
    return TransformedPath(path, IdentityTransform())


def _legend_texts(ax) -> list:
    """Nothing: legends are static (drawn once in the background, see STATIC_LEGENDS)."""
    return []


def _top_headroom(p: Panel, data_max: float) -> None:
    lo, hi = p.ax.get_ylim()
    p.ax.set_ylim(lo, max(hi, data_max * HEADROOM, lo + 1e-9))


def _fits(ax, values: np.ndarray, room: float = 0.92) -> bool:
    """The values lie inside the y limits, below ``room`` of the height (a curve pressed
    against the top edge looks cut off); a log axis needs only the limits."""
    lo, hi = ax.get_ylim()
    v = values[np.isfinite(values)]
    top = hi if ax.get_yscale() == "log" else lo + room * (hi - lo)
    return not len(v) or (v.min() >= lo and v.max() <= top)


def _grow(p: Panel, values: np.ndarray, log: bool = False) -> None:
    """Ask :meth:`Panel.image` for new y limits that hold ``values`` (with headroom): the
    background is then redrawn (ticks and grid), but not the whole panel."""
    lo, hi = p.ax.get_ylim()
    v = values[np.isfinite(values)]
    if not len(v):
        return
    if log:
        lo, hi = min(lo, float(v.min()) / 2), max(hi, float(v.max()) * 2)
    else:
        hi = max(hi, float(v.max()) * HEADROOM)
    p.rescale = (lo, hi)


def _relabel(ax, labels: list[str]) -> None:
    leg = ax.get_legend()
    for text, label in zip(leg.get_texts(), labels, strict=True):
        text.set_text(label)




# prices ------------------------------------------------------------------------------
def _live_gens(model, t: int) -> list[int]:
    m = np.arange(t + 1)
    price = model.rec["price"][: t + 1]
    return [g for g in range(model.n_gen)
            if ((m >= model.env.launch[g]) & (price[:, g] > 0)).any()]


def _prices_after(p: Panel, model, t: int) -> list:
    p.state["gens"] = _live_gens(model, t)
    if p.ax.lines:
        lo, hi = p.ax.get_ylim()
        # the lowest price the market can reach: the salvage floor, or with the outside
        # demand its scrap value (the model's floor of asks and quotes, read only)
        floor = floor_price(model.cfg.buyers, model.env)
        low = min(lo, 0.7 * float(floor[p.state["gens"]].min())) if p.state["gens"] else lo
        p.ax.set_ylim(max(low, 1e-3), hi * 1.2)
    return list(p.ax.lines) + _legend_texts(p.ax)


def _prices_update(p: Panel, model, t: int) -> bool:
    gens = _live_gens(model, t)
    if gens != p.state.get("gens"):
        return False
    m = np.arange(t + 1)
    price, value = model.rec["price"][: t + 1], model.rec["fundamental"][: t + 1]
    lines = p.ax.lines
    for k, g in enumerate(gens):
        live = (m >= model.env.launch[g]) & (price[:, g] > 0)
        x = m[live]
        v = value[live, g]
        for vals in (price[live, g], v[v > 0]):
            if not _fits(p.ax, vals):
                _grow(p, np.r_[vals, np.asarray(p.rescale or (), float)], log=True)
        lines[2 * k].set_data(x, price[live, g])
        lines[2 * k].set_markevery([int(live.sum()) - 1])
        lines[2 * k + 1].set_data(x, v)
    return True


# defaults ----------------------------------------------------------------------------
def _cum_defaults(model, t: int):
    rec = model.rec
    return (np.cumsum(rec["defaults_miner"][: t + 1]), np.cumsum(rec["defaults_neocloud"][: t + 1]),
            rec["lender_failures"][: t + 1])


def _defaults_after(p: Panel, model, t: int) -> list:
    miner, neo, failed = _cum_defaults(model, t)
    _top_headroom(p, max(5, miner[-1], neo[-1], failed[-1]) * 1.15)
    return list(p.ax.lines) + _legend_texts(p.ax)


def _defaults_update(p: Panel, model, t: int) -> bool:
    miner, neo, failed = _cum_defaults(model, t)
    tops = np.r_[miner[-1], neo[-1], failed[-1]].astype(float)
    if not _fits(p.ax, tops):
        _grow(p, tops)
    m = np.arange(t + 1)
    for line, y in zip(p.ax.lines, (miner, neo, failed), strict=True):
        line.set_data(m, y)
    return True


# losses ------------------------------------------------------------------------------
LOSS_KEYS = (("writeoffs", "write-offs"), ("recoveries", "recoveries"),
             ("credit_losses", "credit losses"))


def _losses_after(p: Panel, model, t: int) -> list:
    top = max(float(model.rec[k][: t + 1].max()) for k, _ in LOSS_KEYS) / 1e6
    _top_headroom(p, max(top, 1.0))
    return list(p.ax.lines) + _legend_texts(p.ax)


def _losses_update(p: Panel, model, t: int) -> bool:
    ys = [model.rec[k][: t + 1] / 1e6 for k, _ in LOSS_KEYS]
    if not all(_fits(p.ax, y) for y in ys):
        _grow(p, np.concatenate(ys))
    m = np.arange(t + 1)
    for line, y in zip(p.ax.lines, ys, strict=True):
        line.set_data(m, y)
    return True


# inventory ---------------------------------------------------------------------------
def _inventory_after(p: Panel, model, t: int) -> list:
    rec = model.rec
    _top_headroom(p, max(10, rec["inventory_units"][: t + 1].max(),
                         rec["repo_units"][: t + 1].max()) * 1.15)
    return list(p.ax.collections) + list(p.ax.lines) + _legend_texts(p.ax)


def _inventory_update(p: Panel, model, t: int) -> bool:
    rec = model.rec
    inv, desk = rec["inventory_units"][: t + 1], rec["repo_units"][: t + 1]
    if not _fits(p.ax, np.r_[inv, desk].astype(float)):
        _grow(p, np.r_[inv, desk].astype(float))
    m = np.arange(t + 1)
    old = p.ax.collections[0]
    fill = p.ax.fill_between(m, 0, inv, step="post", color=old.get_facecolor()[0],
                             alpha=old.get_alpha(), zorder=old.get_zorder())
    old.remove()
    p.dynamic = [fill, *[a for a in p.dynamic if a is not old]]
    fill.set_animated(True)
    p.ax.lines[0].set_data(m, inv)
    p.ax.lines[1].set_data(m, desk)
    return True


# capacity ----------------------------------------------------------------------------
def _capacity_after(p: Panel, model, t: int) -> list:
    if model.buyers.unlimited:
        return []
    _top_headroom(p, max(10.0, float(model.rec["buyer_capacity_h100"][: t + 1].max())) * 1.15)
    return list(p.ax.lines) + _legend_texts(p.ax)


def _capacity_update(p: Panel, model, t: int) -> bool:
    if model.buyers.unlimited:
        return True
    cap = model.rec["buyer_capacity_h100"][: t + 1]
    if not _fits(p.ax, cap):
        _grow(p, cap)
    p.ax.lines[0].set_data(np.arange(t + 1), cap)
    return True


# network -----------------------------------------------------------------------------
def _network_after(p: Panel, model, t: int) -> list:
    p.state["texts"] = [a for a in p.ax.texts if a.get_zorder() == 4]  # lender names
    # the counts of draw_network's title are in the app's story and counter: laying out a new
    # title every month cost more than the rest of the panel
    p.ax.set_title("")
    # loans to defaulted borrowers (dotted: 10 ms to draw, more than all the rest) stay in the
    # background; a borrower never comes back from default, so the update adds the new ones
    # to the background once, and draws only the other loans every month
    geo = network_geometry(model)
    p.state["dead"] = node_states(model, t)[model.lenders.n + geo.pairs[:, 1]] \
        == BorrowerStatus.DEFAULTED
    return [c for c in p.ax.collections if c.get_gid() != "loans_defaulted"] + p.state["texts"]


def _network_update(p: Panel, model, t: int) -> bool:
    """Node colours and sizes, defaulted loans and lender-name colours: what
    :func:`draw_network` draws differently from one month to the next (its title, the
    month's counts, is left out in the app)."""
    geo = network_geometry(model)
    nl, nb = model.lenders.n, model.borrowers.n
    state = node_states(model, t)
    size = np.asarray(model.panel["size"][t], dtype=float)
    scale = (points_per_unit(p.ax) / REF_POINTS_PER_UNIT) ** 2
    dead = state[nl + geo.pairs[:, 1]] == BorrowerStatus.DEFAULTED
    by_gid = {c.get_gid(): c for c in p.ax.collections}
    new = dead & ~p.state["dead"]
    if (p.state["dead"] & ~dead).any():
        return False  # a loan came back to life: cannot be (but then draw it all again)
    if new.any():  # into the background, in the style of draw_network's dotted red loans
        p.fig.canvas.restore_region(p.background)
        old = by_gid["loans_defaulted"]
        extra = LineCollection(geo.loan_segments[new], colors=old.get_colors(),
                               linewidths=old.get_linewidths(), alpha=old.get_alpha(),
                               linestyles=old.get_linestyles(), zorder=old.get_zorder())
        p.ax.add_collection(extra, autolim=False)
        p.ax.draw_artist(extra)
        extra.remove()
        old.set_segments(geo.loan_segments[dead])
        p.background = p.fig.canvas.copy_from_bbox(p.fig.bbox)
        p.state["dead"] = dead
    by_gid["loans"].set_segments(geo.loan_segments[~dead])
    colours = np.array(NODE_COLOURS)[state]
    kinds = np.asarray(model.borrowers.kind)
    groups = (("lender", np.arange(nl)), ("miner", nl + np.flatnonzero(kinds == 0)),
              ("neocloud", nl + np.flatnonzero(kinds == 1)),
              ("buyer", nl + nb + np.arange(model.buyers.n)))
    for kind, idx in groups:
        if len(idx) == 0 or kind not in by_gid:
            continue
        smin, smax, _lw = NODE_SIZES[kind]
        by_gid[kind].set_facecolors(colours[idx])
        by_gid[kind].set_sizes(scale * marker_areas(size[idx], smin, smax))
    for i, text in enumerate(p.state["texts"]):
        text.set_color("black" if state[i] == LenderStatus.DELEVERAGING else "white")
    return True


# the legends' labels in the app, without the month's numbers (draw_* writes them in)
STATIC_LEGENDS = {
    draw_prices: lambda m: [x for g, x in enumerate(m.env.names) if g in _live_gens(
        m, m.month)],
    draw_defaults: lambda m: ["miners", "neo-clouds", "lenders failed"],
    draw_losses: lambda m: [label for _, label in LOSS_KEYS],
    draw_inventory: lambda m: ["lenders' repossessed inventory", "held by the repo desk"],
    draw_capacity: lambda m: [f"{capacity_generation(m)} units buyers can still take"],
}


def panel_values(name: str, model, t: int) -> str:
    """The month's numbers the app's static legends leave out, as one line of text."""
    rec = model.rec
    if name == "defaults":
        miner, neo, failed = _cum_defaults(model, t)
        return f"miners {miner[-1]:,} · neo-clouds {neo[-1]:,} · lenders failed {failed[-1]:,}"
    if name == "losses":
        return " · ".join(f"{label} ${rec[k][t] / 1e6:,.0f}M" for k, label in LOSS_KEYS)
    if name == "inventory":
        return (f"lenders hold {int(rec['inventory_units'][t]):,} · the repo desk holds "
                f"{int(rec['repo_units'][t]):,}")
    if name == "capacity":
        if model.buyers.unlimited:
            return "buyers are unlimited"
        return (f"{capacity_generation(model)} units buyers can still take: "
                f"{rec['buyer_capacity_h100'][t]:,.0f}")
    if name == "prices":
        return " · ".join(f"{model.env.names[g]} ${rec['price'][t, g]:,.0f}"
                          for g in _live_gens(model, t))
    return ""


_after_full = {draw_prices: _prices_after, draw_defaults: _defaults_after,
               draw_losses: _losses_after, draw_inventory: _inventory_after,
               draw_capacity: _capacity_after, draw_network: _network_after}

# name -> (draw, update, width, height, margins)
PANELS = {
    "network": (draw_network, _network_update, 6.4, 5.4, NETWORK_MARGINS),
    "prices": (draw_prices, _prices_update, 6.0, 3.8, CHART_MARGINS),
    "defaults": (draw_defaults, _defaults_update, 6.0, 3.4, CHART_MARGINS),
    "losses": (draw_losses, _losses_update, 6.0, 3.4, CHART_MARGINS),
    "inventory": (draw_inventory, _inventory_update, 6.0, 3.4, CHART_MARGINS),
    "capacity": (draw_capacity, _capacity_update, 6.0, 3.4, CHART_MARGINS),
}


def make_panels() -> dict[str, Panel]:
    """One :class:`Panel` per entry of :data:`PANELS` (one set per browser session)."""
    return {name: Panel(draw, update, w, h, margins)
            for name, (draw, update, w, h, margins) in PANELS.items()}
