"""Month-by-month pictures of a run: the browser app's panels and ``liqsim animate``'s GIF.

Every ``draw_*`` function draws one panel for month ``t`` on a given matplotlib ``Axes`` from
the model's records (``model.rec``, ``model.panel``, written once a month by the model), so the
same code serves a model that is still running (the app, ``t = model.month``) and a finished run
(the animation, every ``t``). The x axis always spans the whole horizon, so panels do not jump
as months are added. Nothing here uses pyplot: figures are :class:`matplotlib.figure.Figure` on
the Agg canvas, and the GIF is written with :class:`matplotlib.animation.PillowWriter`
(Pillow's GIF encoder), one frame per simulated month.

The network panel is :func:`sim.views.plots.draw_network`, the same drawing as the static
``network_worst_month.png`` (same layout, node colours, markers and sizes); its layout and funding
arrows are computed once per model and reused for every frame.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from sim.core.config import ConfigError
from sim.core.environment import month_label
from sim.io.atomic import atomic_write_with
from sim.views.plots import (
    FAILED_LENDER,
    NODE_COLOURS,
    dollars,
    draw_network,
    month_axis,
    new_figure,
)
from sim.world.runner import run_scenario

GEN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _span(ax, model, t: int) -> np.ndarray:
    """Months 0..t, with the x axis fixed to the whole horizon."""
    ax.set_xlim(0, max(model.cfg.months, 1))
    ax.set_xlabel(month_axis(model.cfg), fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return np.arange(t + 1)


def draw_prices(ax, model, t: int) -> None:
    """Price index (solid) and value in best use (dashed) per shipping generation, log scale."""
    m = _span(ax, model, t)
    price, value = model.rec["price"][: t + 1], model.rec["fundamental"][: t + 1]
    env = model.env
    for g in range(model.n_gen):
        live = (m >= env.launch[g]) & (price[:, g] > 0)
        if not live.any():
            continue
        colour = GEN_COLOURS[g % len(GEN_COLOURS)]
        last = [int(live.sum()) - 1]  # a dot on the latest month (visible from month 0 on)
        ax.plot(m[live], price[live, g], color=colour, lw=1.8, marker="o", ms=3,
                markevery=last, label=env.names[g])
        ax.plot(m[live], value[live, g], color=colour, lw=1.1, ls="--")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(dollars))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("$ per GPU (log)", fontsize=8)
    ax.set_title("GPU price index (solid) vs value in best use (dashed)", fontsize=9)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper right", ncols=3)


def draw_defaults(ax, model, t: int) -> None:
    """Cumulative borrower defaults by type and cumulative lender failures."""
    m = _span(ax, model, t)
    rec = model.rec
    miner = np.cumsum(rec["defaults_miner"][: t + 1])
    neo = np.cumsum(rec["defaults_neocloud"][: t + 1])
    ax.step(m, miner, where="post", color="#e377c2", lw=1.8, label=f"miners ({miner[-1]})")
    ax.step(m, neo, where="post", color="#17becf", lw=1.8, label=f"neo-clouds ({neo[-1]})")
    failed = rec["lender_failures"][: t + 1]
    ax.step(m, failed, where="post", color=NODE_COLOURS[FAILED_LENDER], lw=1.5, ls="--",
            label=f"lenders failed ({failed[-1]})")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0, top=max(5, miner[-1], neo[-1], failed[-1]) * 1.15)
    ax.set_ylabel("cumulative count", fontsize=8)
    ax.set_title("Defaults by agent type", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def draw_losses(ax, model, t: int) -> None:
    """Lenders' cumulative write-offs, recoveries and credit losses, $ millions."""
    m = _span(ax, model, t)
    rec = model.rec
    for key, label, colour, ls in (("writeoffs", "write-offs", "#7f7f7f", "-"),
                                   ("recoveries", "recoveries", "#2ca02c", "--"),
                                   ("credit_losses", "credit losses", "#d62728", "-")):
        y = rec[key][: t + 1] / 1e6
        ax.plot(m, y, color=colour, ls=ls, lw=1.8, label=f"{label}: ${y[-1]:,.0f}M")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("cumulative, $ millions", fontsize=8)
    ax.set_title("Cumulative credit losses", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def draw_inventory(ax, model, t: int) -> None:
    """Lenders' repossessed GPUs not yet sold (the overhang) and GPUs held by the repo desk."""
    m = _span(ax, model, t)
    rec = model.rec
    inv = rec["inventory_units"][: t + 1]
    ax.fill_between(m, 0, inv, step="post", color="#9467bd", alpha=0.3)
    ax.step(m, inv, where="post", color="#9467bd", lw=1.8,
            label=f"lenders' repossessed inventory ({inv[-1]:,})")
    desk = rec["repo_units"][: t + 1]
    ax.step(m, desk, where="post", color="#8c564b", lw=1.4, ls="--",
            label=f"held by the repo desk ({desk[-1]:,})")
    ax.set_ylim(bottom=0, top=max(10, inv.max(), desk.max()) * 1.15)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:,.0f}"))
    ax.set_ylabel("GPU units", fontsize=8)
    ax.set_title("Overhang: repossessed GPUs waiting to be sold", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def capacity_generation(model) -> str:
    """The generation whose buyer capacity the model records (``buyer_capacity_h100``): H100,
    or the first generation of a scenario without one (asic_2022's S19 rigs)."""
    names = model.env.names
    return "H100" if "H100" in names else names[0]


def draw_capacity(ax, model, t: int) -> None:
    """Units of :func:`capacity_generation` (H100) the secondary buyers could still absorb at
    today's price (capital and MW)."""
    m = _span(ax, model, t)
    ax.set_title("Secondary buyers' remaining capacity", fontsize=9)
    if model.buyers.unlimited:
        ax.text(0.5, 0.5, "buyers are unlimited\n(buyers.unlimited = true)", ha="center",
                va="center", transform=ax.transAxes)
        return
    cap = model.rec["buyer_capacity_h100"][: t + 1]
    gen = capacity_generation(model)
    ax.plot(m, cap, color="#17becf", lw=1.8, label=f"{gen} units buyers can still take "
                                                   f"({cap[-1]:,.0f})")
    ax.set_ylim(bottom=0, top=max(10.0, float(cap.max())) * 1.15)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:,.0f}"))
    ax.set_ylabel("GPU units (capital and spare MW)", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")


# --------------------------------------------------------------------------- the GIF
def _frame_figure(model) -> tuple[Figure, object, object]:
    """Network (left) and price paths (right); fixed margins, cheaper than a layout engine."""
    fig = new_figure(11.0, 5.2, dpi=80, layout=None)
    net, prices = fig.subplots(1, 2, width_ratios=(1.25, 1.0))
    fig.subplots_adjust(left=0.01, right=0.98, bottom=0.13, top=0.88, wspace=0.12)
    return fig, net, prices


def draw_frame(fig, net, prices, model, t: int) -> None:
    """Frame ``t`` of the GIF on the Axes of :func:`_frame_figure`: the network of
    :func:`sim.views.plots.draw_network` (the same drawing as ``network_worst_month.png``) and the
    price paths."""
    net.clear()
    prices.clear()
    draw_network(net, model, t)
    draw_prices(prices, model, t)
    c = model.cfg
    fig.suptitle(f"{c.name}: month {t} of {c.months} ({month_label(t, c.start)})", fontsize=12)


def animation_frames(model) -> range:
    """The frames of the animation: one per simulated month, 1..``model.month``."""
    return range(1, model.month + 1)


def check_gif_path(out: str | Path) -> Path:
    """``out`` as a Path if it names a GIF file, else :class:`ConfigError`."""
    path = Path(out)
    if path.suffix.lower() != ".gif":
        raise ConfigError(f"--out {out}: must end in .gif")
    if path.is_dir():
        raise ConfigError(f"--out {out}: is a directory")
    return path


class GifWriter(PillowWriter):
    """Matplotlib's Pillow GIF writer, but :meth:`finish` encodes only after every frame.

    ``FuncAnimation.save`` calls ``finish`` on its way out even when drawing a frame raised
    (Ctrl-C); ``PillowWriter.finish`` would then encode a truncated GIF, or, before the first
    frame, raise ``IndexError`` on its empty frame list and hide the ``KeyboardInterrupt``.
    """

    def finish(self) -> None:
        if sys.exc_info()[1] is None:  # not unwinding from an exception
            super().finish()


def write_gif(model, out: str | Path, fps: int = 3) -> Path:
    """Write the cascade of a finished run as a GIF (network + price paths), one frame a month.

    The file appears atomically: it is encoded under a temporary name in the same directory and
    renamed into place; an error or Ctrl-C while drawing leaves no file (:class:`GifWriter`).
    """
    out = Path(out)
    fig, net, prices = _frame_figure(model)

    def frame(t: int) -> list:
        draw_frame(fig, net, prices, model, t)
        return []

    anim = FuncAnimation(fig, frame, frames=animation_frames(model), blit=False,
                         cache_frame_data=False, repeat=False)

    def encode(tmp: str) -> None:
        gif = f"{tmp}.gif"  # Pillow picks the format from the extension
        try:
            anim.save(gif, writer=GifWriter(fps=fps))
            os.replace(gif, tmp)
        finally:
            Path(gif).unlink(missing_ok=True)

    atomic_write_with(out, encode)
    fig.clear()
    return out


def animate(cfg, out: str | Path, fps: int = 3, on_month=None) -> Path:
    """Run scenario ``cfg`` to the end, then write its GIF to ``out``."""
    model = run_scenario(cfg, on_month=on_month)
    return write_gif(model, out, fps=fps)
