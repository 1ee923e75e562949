"""The tables of a run and ``model.datacollector``, Mesa's ``DataCollector`` interface over them.

:func:`series`, :func:`panel` and :func:`events` turn a model's records into the DataFrames of
``series.parquet``, ``panel.parquet`` and ``events.parquet`` (also reachable, and documented,
as ``sim.world.metrics.series`` etc.). This module sits below :mod:`sim.world.model`, which
imports it for its ``datacollector`` property, so it imports nothing from the model at run time.

A :class:`sim.world.model.LiquidationModel` writes every month into preallocated numpy arrays
(``model.rec``, ``model.panel``) and an event log in columns (``model.events``, a
:class:`sim.world.eventlog.EventLog`); it collects nothing else per step. This view reads
them only when asked, so it costs nothing while the model runs, and offers
what Mesa's tools call on a ``DataCollector``:

* :meth:`RecordsCollector.get_model_vars_dataframe` -- one row per month (0 = t0), the columns
  of ``series.parquet`` (per-generation variables suffixed ``_<generation>``);
* :meth:`RecordsCollector.get_agent_vars_dataframe` -- one row per (``Step``, ``AgentID``) with
  ``state``, ``cash`` and ``size`` (the agent panel; ``AgentID`` is the agent's network node);
* :meth:`RecordsCollector.get_table_dataframe` -- the ``events`` table;
* ``model_vars``, ``agent_reporters``, ``_collection_steps`` and ``_agent_records``, which
  ``mesa.batch_run`` reads.

``collect()`` does nothing: the model has already recorded the month.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agents.borrower import BorrowerStatus
from agents.lender import LenderStatus
from sim.core.environment import year_month

if TYPE_CHECKING:  # annotations only: sim.world.model imports this module
    from sim.world.model import LiquidationModel

AGENT_VARS = ("state", "cash", "size")
# the fields of an event in ``model.events`` (the order of its tuples and columns)
EVENT_COLUMNS = ("month", "event", "agent", "index", "generation", "units", "amount", "price")


class _AgentRecords(Mapping):
    """``{step: [(step, agent_id, state, cash, size), ...]}``, built per step on demand."""

    def __init__(self, model):
        self._model = model

    def __getitem__(self, step: int) -> list[tuple]:
        t = self._model.env.t
        if not isinstance(step, int) or not 0 <= step <= t:
            raise KeyError(step)
        p = self._model.panel
        ids = [a.node for a in self._model.panel_agents]
        return list(zip([step] * len(ids), ids, p["state"][step].tolist(),
                        p["cash"][step].tolist(), p["size"][step].tolist(), strict=True))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._model.env.t + 1))

    def __len__(self) -> int:
        return self._model.env.t + 1


class RecordsCollector:
    """A read-only ``DataCollector`` look-alike backed by a model's records (see module)."""

    agent_reporters = dict.fromkeys(AGENT_VARS)
    agenttype_reporters: dict = {}
    _agenttype_records: dict = {}

    def __init__(self, model):
        self._model = model

    def collect(self, model=None) -> None:
        """Nothing to do: the model records every month itself."""

    @property
    def _collection_steps(self) -> list[int]:
        return list(range(self._model.env.t + 1))

    @property
    def model_reporters(self) -> dict[str, None]:
        return dict.fromkeys(self._series().columns.drop("month"))

    @property
    def model_vars(self) -> dict[str, list]:
        """``{variable: [value at month 0, 1, ...]}`` as Mesa's DataCollector holds them."""
        frame = self._series().drop(columns="month")
        return {c: frame[c].tolist() for c in frame.columns}

    @property
    def _agent_records(self) -> Mapping[int, list[tuple]]:
        return _AgentRecords(self._model)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return {"events": self.get_table_dataframe("events")}

    def _series(self) -> pd.DataFrame:
        return series(self._model)

    def get_model_vars_dataframe(self) -> pd.DataFrame:
        """One row per month, indexed by month (0 = t0); the columns of ``series.parquet``."""
        return self._series().set_index("month")

    def get_agent_vars_dataframe(self) -> pd.DataFrame:
        """``state``, ``cash``, ``size`` indexed by (``Step``, ``AgentID``), as Mesa's; plus
        the agent's ``name`` and ``kind``."""
        df = panel(self._model).rename(columns={"month": "Step", "agent": "AgentID"})
        return df.set_index(["Step", "AgentID"])[[*AGENT_VARS, "name", "kind"]]

    def get_table_dataframe(self, table_name: str) -> pd.DataFrame:
        """``events``: the event log (as ``events.parquet``)."""
        if table_name != "events":
            raise ValueError(f"table {table_name!r} does not exist; the only table is 'events'")
        return events(self._model)


# --------------------------------------------------------------------------- the tables
# per-generation records that mean nothing before the generation's launch (NaN there)
BEFORE_LAUNCH_NAN = ("rent", "price", "fundamental")


def series(model: LiquidationModel) -> pd.DataFrame:
    """Model time series, one row per month (0 = t0), per-generation columns suffixed _<gen>;
    ``date`` is the first day of the month; rents, prices and values are NaN before a
    generation's launch (``model.rec`` keeps its zeros). Columns: ``sim.io.datadict.SERIES``."""
    r, n = model.rec, model.env.t + 1
    dates = pd.to_datetime([f"{year_month(t, model.cfg.start)}-01" for t in range(n)]
                           ).as_unit("s")
    cols: dict[str, np.ndarray] = {"month": np.arange(n), "date": dates}
    before = np.arange(n)[:, None] < model.env.launch[None, :]
    for key, arr in r.items():
        if arr.ndim == 1:
            cols[key] = arr[:n]
        else:
            arr = arr[:n]
            if key in BEFORE_LAUNCH_NAN and before.any():
                arr = np.where(before, np.nan, arr)
            for g, name in enumerate(model.env.names):
                cols[f"{key}_{name}"] = arr[:, g]
    return pd.DataFrame(cols)


LENDER_STATES = tuple(s.label for s in LenderStatus)  # normal, deleveraging, failed
BORROWER_STATES = tuple(s.label for s in BorrowerStatus)  # healthy, distressed, defaulted
STATES = (*LENDER_STATES, *BORROWER_STATES, "active")


def panel(model: LiquidationModel) -> pd.DataFrame:
    """Agent panel in long form: month, agent (node id), name, kind, state, cash, size;
    ``kind`` and ``state`` are categorical (state names: :data:`STATES`)."""
    n = model.env.t + 1
    agents = model.panel_agents
    k, nl, nb = len(agents), model.lenders.n, model.borrowers.n
    # the code's name per agent: lenders' codes index LENDER_STATES, borrowers' the next three
    nls, nbs = len(LENDER_STATES), len(BORROWER_STATES)
    offset = np.r_[np.zeros(nl, np.int8), np.full(nb, nls, np.int8),
                   np.full(k - nl - nb, nls + nbs, np.int8)]
    codes = (model.panel["state"][:n] + offset[None, :]).ravel()
    kinds = [a.kind for a in agents]
    return pd.DataFrame({
        "month": np.repeat(np.arange(n), k),
        "agent": np.tile([a.node for a in agents], n),
        "name": np.tile([a.name for a in agents], n),
        "kind": pd.Categorical(np.tile(kinds, n), categories=list(dict.fromkeys(kinds))),
        "state": pd.Categorical.from_codes(codes, categories=list(STATES)),
        "cash": model.panel["cash"][:n].ravel(),
        "size": model.panel["size"][:n].ravel(),
    })


def events(model: LiquidationModel) -> pd.DataFrame:
    """The event log, one meaning per column (``sim.io.datadict.EVENTS``): the model's records
    carry an LTV (margin calls) or a collateral value (defaults) in their ``price`` field and
    the debt, loan, equity or a retired site's MW in ``amount``; here each has its own column,
    NaN where it does not apply, and ``generation`` is the generation's name. Trades (a
    ``price`` per GPU, ``value`` = units x price) are sales, purchases and site_fleet_sale (a
    lender's units sold with its site at the price index)."""
    log = model.events
    c = log.columns()
    vocab, code = log.names, c.name

    def of(*names):  # whether each event is called one of names
        return np.isin(code, [i for i, name in enumerate(vocab) if name in names])

    trade = of("sale", "purchase", "site_fleet_sale")  # (the last with sites on)
    default = of(*(name for name in vocab if name.startswith("default_")))
    names = np.array([*model.env.names, None], dtype=object)
    nan = np.nan

    def where(mask, col):
        return np.where(mask, col, nan)

    return pd.DataFrame({
        "month": c.month,
        "event": _categorical(code, vocab),
        "agent": _categorical(c.agent, log.agents),
        "index": c.idx,
        "generation": pd.Categorical(names[np.where(c.gen >= 0, c.gen, len(names) - 1)],
                                     categories=list(model.env.names)),
        "units": c.units,
        "price": where(trade, c.price),
        "value": where(trade | of("site_sale"), c.amount),
        "debt": where(default | of("margin_call", "refinancing_refused",
                                   "loan_accelerated_repaid"), c.amount),
        "collateral": where(default, c.price),
        "ltv": where(of("margin_call"), c.price),
        "loan": where(of("repo_loan"), c.amount),
        "equity": where(of("deleveraging", "lender_failure"), c.amount),
        "mw": where(of("site_retired"), c.amount),
    })


def _categorical(codes: np.ndarray, vocab: list[str]) -> pd.Categorical:
    """Codes into ``vocab`` as a categorical whose categories are the values present, sorted,
    of pandas' dtype for ``str``: what ``pd.Categorical`` makes of a column of the strings
    (for none, of an empty column cast to ``str``, whose categories Parquet stores as null)."""
    if not len(codes):
        return pd.Categorical(pd.Series([], dtype=object).astype(str))
    present = sorted(np.flatnonzero(np.bincount(codes, minlength=len(vocab))).tolist(),
                     key=vocab.__getitem__)
    at = np.zeros(len(vocab), dtype=np.int64)
    at[present] = np.arange(len(present))
    return pd.Categorical.from_codes(at[codes],
                                     categories=pd.Index([vocab[i] for i in present], dtype=str))
