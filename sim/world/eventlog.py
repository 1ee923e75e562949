"""The model's event log in columns: :class:`EventLog` (``model.events``).

An event is (month, name, agent, idx, gen, units, amount, price): one row of
``events.parquet`` (:func:`sim.world.collect.events` gives each field its meaning). The log
keeps them as typed columns: ``month``, ``idx``, ``gen`` and ``units`` int64, ``amount`` and
``price`` float64, ``name`` and ``agent`` int64 codes into the log's vocabularies
(``log.names``, ``log.agents``), which start with the fixed :data:`EVENT_NAMES` and
:data:`EVENT_AGENTS`, so a compiled kernel can write the codes of the events it makes. A
name outside them gets the next code in that log's own vocabulary.

Events are appended a chunk at a time (:meth:`EventLog.add`: one field an array along the
chunk, or one value for all of it) and joined into the columns only when something reads them
(:meth:`EventLog.columns`); a chunk's arrays are copied, so a caller may reuse its buffers.
The log is also the sequence of tuples the model's event list used to be: ``log[i]``,
iteration, ``len``, ``==`` against a list and ``repr`` give the tuples of Python ``int``,
``str`` and ``float`` (made once, on the first read, and kept), so
``repr(model.events)`` is the text the golden record's fingerprint hashes
(:func:`sim.qa.bench.fingerprint`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import compress, repeat
from typing import Any, NamedTuple, overload

import numpy as np

# the event names every run may log; the order fixes their codes
EVENT_NAMES = ("margin_call", "refinancing_refused", "loan_accelerated_repaid",
               "default_payment", "default_covenant", "default_dscr", "repossession",
               "sale", "purchase", "repo_loan", "repo_default", "site_sale",
               "site_fleet_sale", "site_retired", "lender_failure", "deleveraging",
               "guarantee_withdrawn")
# the agents that log them (a borrower's kind, miner or neocloud, or its role)
EVENT_AGENTS = ("lender", "borrower", "miner", "neocloud", "buyer", "salvage", "repo_desk",
                "lolr")

NAME_CODE = {name: i for i, name in enumerate(EVENT_NAMES)}
AGENT_CODE = {agent: i for i, agent in enumerate(EVENT_AGENTS)}

_I8, _F8 = np.dtype(np.int64), np.dtype(np.float64)


class EventColumns(NamedTuple):
    """The log's columns, one entry per event in log order (read-only arrays)."""

    month: np.ndarray
    name: np.ndarray  # codes into EventLog.names
    agent: np.ndarray  # codes into EventLog.agents
    idx: np.ndarray
    gen: np.ndarray
    units: np.ndarray
    amount: np.ndarray
    price: np.ndarray


# the dtype of each field of a chunk after its length (EventColumns' order)
_FIELD_DTYPES = (_I8, _I8, _I8, _I8, _I8, _I8, _F8, _F8)
_NO_COLUMNS = EventColumns(*(np.zeros(0, d) for d in _FIELD_DTYPES))  # an empty log's
for _a in _NO_COLUMNS:
    _a.flags.writeable = False


def _field(x: Any, dtype: np.dtype, n: int) -> Any:
    """One numeric field of a chunk of ``n`` events: an array (or list) as a copied array of
    ``dtype`` (a ValueError unless ``n`` long), else the one Python number for all."""
    tx = type(x)  # (the exact types first: cheaper than isinstance)
    if tx is np.ndarray or tx is list or isinstance(x, np.ndarray | list | tuple):
        a = np.array(x, dtype=dtype)
        if a.shape != (n,):
            raise ValueError(f"an event field of shape {a.shape} for {n} events")
        return a
    return float(x) if dtype is _F8 else int(x)


class EventLog(Sequence):
    """The event log (module docstring): typed columns appended a chunk at a time, read as
    columns (:meth:`columns`, :meth:`count_named`) or as the tuples (month, name, agent, idx, gen,
    units, amount, price) of Python numbers and strings."""

    __hash__ = None  # mutable, compared by value

    def __init__(self) -> None:
        self.names = list(EVENT_NAMES)
        self.agents = list(EVENT_AGENTS)
        self._name_code = dict(NAME_CODE)
        self._agent_code = dict(AGENT_CODE)
        self.clear()

    def clear(self) -> None:
        """Remove every event (the vocabularies stay)."""
        # each chunk: (n, month, name, agent, idx, gen, units, amount, price), a field an
        # array of n or one Python number for all; after columns() one chunk of arrays
        self._chunks: list[tuple] = []
        self._n = 0
        self._joined = True  # whether _chunks is empty or the one chunk columns() made
        self._tuples: list[tuple] = []  # the first len(_tuples) events as tuples
        self._counted: tuple[int, list[int]] = (0, [0] * len(self.names))  # name_counts() at _n

    # -- writing

    def code(self, name: str) -> int:
        """The code of event name ``name`` (a new one gets the next code)."""
        c = self._name_code.get(name)
        if c is None:
            c = self._name_code[name] = len(self.names)
            self.names.append(name)
        return c

    def agent_code(self, agent: str) -> int:
        """The code of agent ``agent`` (a new one gets the next code)."""
        c = self._agent_code.get(agent)
        if c is None:
            c = self._agent_code[agent] = len(self.agents)
            self.agents.append(agent)
        return c

    def _codes(self, x: Any, n: int, code) -> Any:
        """A name or agent field: a string's code, an int as a code, a list (or array) of
        strings as an array of codes, an integer array as codes (copied)."""
        if type(x) is str:
            return code(x)
        if isinstance(x, np.ndarray) and x.dtype.kind in "UO":  # strings in an array
            x = x.tolist()
        if isinstance(x, list | tuple):
            x = np.array([code(s) if type(s) is str else int(s) for s in x], dtype=_I8)
            if x.shape != (n,):
                raise ValueError(f"an event field of shape {x.shape} for {n} events")
            return x
        return _field(x, _I8, n)

    def add(self, month: int, name: Any, agent: Any, idx: Any, gen: Any = -1, units: Any = 0,
            amount: Any = 0.0, price: Any = 0.0) -> None:
        """Append one event per entry of ``idx`` (an array or list; a number is one event).
        Each other field is one value for all or an array (a list) along ``idx``; ``name``
        and ``agent`` are strings or codes (:meth:`code`, :meth:`agent_code`); numbers are
        converted to int64 (month, idx, gen, units) or float64 (amount, price) as numpy's
        ``astype`` converts them (``month`` too may be an array). A ValueError when an
        array's length is not ``idx``'s."""
        # the common types inline (a call costs about as much as a field's conversion)
        if type(idx) is np.ndarray and idx.ndim == 1:
            n = idx.shape[0]
            if not n:
                return
            idx = idx.astype(_I8)  # a copy
        elif isinstance(idx, np.ndarray | list | tuple):
            idx = np.array(idx, dtype=_I8)
            if idx.ndim != 1:
                raise ValueError(f"event indices of shape {idx.shape}")
            n = len(idx)
            if not n:
                return
        else:
            n, idx = 1, int(idx)
        names, agents = self._name_code, self._agent_code
        self._chunks.append((
            n, month if type(month) is int else _field(month, _I8, n),
            names[name] if type(name) is str and name in names
            else self._codes(name, n, self.code),
            agents[agent] if type(agent) is str and agent in agents
            else self._codes(agent, n, self.agent_code),
            idx,
            gen if type(gen) is int else _field(gen, _I8, n),
            units if type(units) is int else _field(units, _I8, n),
            amount if type(amount) is float else _field(amount, _F8, n),
            price if type(price) is float else _field(price, _F8, n)))
        self._n += n
        self._joined = False

    def add_one(self, month: int, name: str, agent: str, idx: int, gen: int = -1,
                units: int = 0, amount: float = 0.0, price: float = 0.0) -> None:
        """Append one event (:meth:`add` for one number ``idx``, with less to check)."""
        names, agents = self._name_code, self._agent_code
        self._chunks.append((
            1, int(month), names[name] if name in names else self._codes(name, 1, self.code),
            agents[agent] if agent in agents else self._codes(agent, 1, self.agent_code),
            int(idx), int(gen), int(units), float(amount), float(price)))
        self._n += 1
        self._joined = False

    def append(self, event: tuple) -> None:
        """Append one event given as a tuple (month, name, agent, idx, gen, units, amount,
        price), as a list of such tuples appends it."""
        self.add_one(*event)

    # -- reading

    def columns(self) -> EventColumns:
        """The columns (:class:`EventColumns`), the chunks joined on the first read after an
        append (then kept as one chunk)."""
        if not self._joined:
            self._join()
        return EventColumns(*self._chunks[0][1:]) if self._chunks else _NO_COLUMNS

    def _join(self) -> None:
        # per field: the chunks' arrays concatenated into their rows, the chunks' single
        # values repeated into theirs; numpy calls and C-level iteration only (a Python loop
        # over the chunks of every field would cost more than the rest)
        n, self._joined = self._n, True
        lengths, *fields = zip(*self._chunks, strict=True)
        k = len(lengths)
        lengths = np.fromiter(lengths, dtype=_I8, count=k)  # (fromiter: faster than array)
        cols = []
        for values, dtype in zip(fields, _FIELD_DTYPES, strict=True):
            is_array = np.fromiter(map(isinstance, values, repeat(np.ndarray)), dtype=bool,
                                   count=k)
            if not is_array.any():
                col = np.repeat(np.fromiter(values, dtype=dtype, count=k), lengths)
            elif is_array.all():
                col = np.concatenate(values) if k > 1 else values[0]
            else:
                rows = np.repeat(is_array, lengths)
                col = np.empty(n, dtype=dtype)
                col[rows] = np.concatenate(list(compress(values, is_array)))
                single = ~is_array
                col[~rows] = np.repeat(np.fromiter(compress(values, single), dtype=dtype),
                                       lengths[single])
            col.flags.writeable = False
            cols.append(col)
        self._chunks = [(n, *cols)]

    def count_named(self, name: str) -> int:
        """How many events are called ``name`` (``count``, a sequence's, counts a tuple)."""
        c, counts = self._name_code.get(name), self.name_counts()
        return 0 if c is None or c >= len(counts) else counts[c]  # (a name coded, not logged)

    def name_counts(self) -> list[int]:
        """How many events have each name code (``log.names``' order), counted from the
        names' column alone, without joining the other columns (a summary reads only these);
        kept until the next append."""
        if self._counted[0] != self._n:
            counts = [0] * len(self.names)
            arrays = []
            for chunk in self._chunks:
                codes = chunk[2]
                if type(codes) is np.ndarray:
                    arrays.append(codes)
                else:
                    counts[codes] += chunk[0]
            if arrays:
                more = np.bincount(np.concatenate(arrays), minlength=len(counts)).tolist()
                counts = [a + b for a, b in zip(counts, more, strict=True)]
            self._counted = (self._n, counts)
        return self._counted[1]

    def tuples(self) -> list[tuple]:
        """The events as a new list of tuples (month, name, agent, idx, gen, units, amount,
        price) of Python ``int``, ``str``, ``str``, ``int``, ``int``, ``int``, ``float``,
        ``float``, in log order."""
        return list(self._made())

    def _made(self) -> list[tuple]:
        """The tuples, made for the events not made yet and kept."""
        done = self._tuples
        k = len(done)
        if k < self._n:
            c = self.columns()
            names = np.array(self.names, dtype=object)[c.name[k:]].tolist()
            agents = np.array(self.agents, dtype=object)[c.agent[k:]].tolist()
            done.extend(zip(c.month[k:].tolist(), names, agents, c.idx[k:].tolist(),
                            c.gen[k:].tolist(), c.units[k:].tolist(), c.amount[k:].tolist(),
                            c.price[k:].tolist(), strict=True))
        return done

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> tuple: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple]: ...

    def __getitem__(self, i):
        """An event's tuple; a slice gives a list of them."""
        return self._made()[i]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._made())

    def __eq__(self, other: object) -> bool:
        """Equal to another log or a list with the same tuples (as lists compare)."""
        if isinstance(other, EventLog):
            return self._made() == other._made()
        if isinstance(other, list):
            return self._made() == other
        return NotImplemented

    def __repr__(self) -> str:
        """The list of tuples' repr (the text the golden fingerprint hashes)."""
        return repr(self._made())
