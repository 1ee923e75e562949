"""``model.datacollector``: Mesa's ``DataCollector`` interface over the model's own records.

A :class:`sim.model.LiquidationModel` writes every month into preallocated numpy arrays
(``model.rec``, ``model.panel``) and an event list; it collects nothing else per step. This
view reads those arrays only when asked, so it costs nothing while the model runs, and offers
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

import pandas as pd

AGENT_VARS = ("state", "cash", "size")


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
        from sim.metrics import series

        return series(self._model)

    def get_model_vars_dataframe(self) -> pd.DataFrame:
        """One row per month, indexed by month (0 = t0); the columns of ``series.parquet``."""
        return self._series().set_index("month")

    def get_agent_vars_dataframe(self) -> pd.DataFrame:
        """``state``, ``cash``, ``size`` indexed by (``Step``, ``AgentID``), as Mesa's; plus
        the agent's ``name`` and ``kind``."""
        from sim.metrics import panel

        df = panel(self._model).rename(columns={"month": "Step", "agent": "AgentID"})
        return df.set_index(["Step", "AgentID"])[[*AGENT_VARS, "name", "kind"]]

    def get_table_dataframe(self, table_name: str) -> pd.DataFrame:
        """``events``: the event log (as ``events.parquet``)."""
        if table_name != "events":
            raise ValueError(f"table {table_name!r} does not exist; the only table is 'events'")
        from sim.metrics import events

        return events(self._model)
