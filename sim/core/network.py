"""The lending and funding network.

* Lending (lender -> borrower): each borrower's facility is syndicated across k lenders, with
  k = 1 + Poisson(syndicate - 1) capped at the number of lenders, shares drawn from a flat
  Dirichlet and the largest share held by the lead (agent) bank. Which lenders: uniformly
  (``erdos_renyi``, the bipartite Erdos-Renyi graph of Erdos & Renyi 1959), in proportion to
  1 + current degree (``scale_free``, preferential attachment, Barabasi & Albert 1999), or with
  the lead drawn from the core with probability 0.8 (``core_periphery``, Craig & von Peter 2014).
* Funding (lender -> lender): ``erdos_renyi`` directed G(n, p) with p = z/(n-1);
  ``scale_free`` the directed scale-free graph of Bollobas et al. (2003); ``core_periphery`` a
  complete core whose members each fund periphery lenders with probability z/n_core; or an edge
  list file (``creditor debtor [weight]`` per line, lender indices 0..n-1).

All draws come from the model's Generator; networkx generators get an integer seed drawn from it.
"""

from __future__ import annotations

import errno
import io
import os
import random
import stat
from pathlib import Path
from typing import BinaryIO

import networkx as nx
import numpy as np

from sim.core import numerics as nm
from sim.core.config import ConfigError, NetworkCfg, file_kind

MAX_EDGELIST_ROWS = 1_000_000
SYNDICATE_BLOCK = 4096  # borrowers per block of syndicate draws (memory: block x n_lenders)
MAX_EDGELIST_BYTES = 128 * 2**20  # 1M rows of 'creditor debtor weight' with room for comments
# Weights are relative (each lender's row is normalised to its interbank funding), but the model
# multiplies them by dollar amounts first: 1e300 overflowed to inf. 1e15 covers weights given
# as dollar exposures up to a quadrillion, and 1e15 x 1e6 rows x 1e15 $ stays finite.
MAX_EDGELIST_WEIGHT = 1e15


def _top_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k largest keys of each row, largest first, ties to the lower column:
    the first k columns of a stable argsort of -keys, found by partition (linear per row)."""
    neg = -keys
    if k >= keys.shape[1]:
        return np.argsort(neg, axis=1, kind="stable")
    part = np.argpartition(neg, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, np.take_along_axis(neg, part, axis=1)), axis=-1)
    return np.take_along_axis(part, order, axis=1)


def syndicates(n_borrowers: int, n_lenders: int, cfg: NetworkCfg,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loan rows (borrower, lender, share) of the syndicated facilities, lead row first.

    The random keys are drawn in blocks of ``SYNDICATE_BLOCK`` borrowers (the same stream as
    one n_borrowers x n_lenders draw), so memory stays O(block x n_lenders + n_borrowers x k).
    """
    k = np.minimum(1 + rng.poisson(max(cfg.syndicate - 1.0, 0.0), n_borrowers), n_lenders)
    if n_borrowers == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    n_core = max(1, int(round(cfg.core_share * n_lenders)))
    kmax = int(k.max())
    blocks = [(lo, min(lo + SYNDICATE_BLOCK, n_borrowers))
              for lo in range(0, n_borrowers, SYNDICATE_BLOCK)]
    if cfg.kind == "scale_free":
        chosen = preferential_attachment(k, n_lenders, rng)[:, :kmax]
    else:
        w = np.ones(n_lenders)
        if cfg.kind == "core_periphery":
            w[:n_core] = 4.0 * max(n_lenders - n_core, 1) / n_core
        # weighted sampling without replacement by Gumbel top-k (Vieira 2014; Efraimidis &
        # Spirakis 2006): the k largest log w + Gumbel keys
        logw = nm.log(w)[None, :]
        chosen = np.concatenate([_top_k(logw + nm.gumbel(rng, (hi - lo, n_lenders)), kmax)
                                 for lo, hi in blocks])
    mask = np.arange(kmax)[None, :] < k[:, None]
    rows_b = np.repeat(np.arange(n_borrowers), k)
    rows_l = chosen[mask]
    # shares: flat Dirichlet (normalised exponentials), the largest to the lead (first) row.
    # Only the first k of each row's n_lenders draws are used. The row sums run over a width
    # whose pairwise summation adds the same numbers in the same order as a full row would
    # (its entries beyond column k are zeros), so the shares are the same to the bit.
    width = n_lenders if n_lenders <= 129 or kmax > 65 else 65
    raw = np.zeros((n_borrowers, width))
    for lo, hi in blocks:
        raw[lo:hi, :kmax] = nm.exponential(rng, (hi - lo, n_lenders))[:, :kmax]
    raw[:, :kmax] = -np.sort(-np.where(mask, raw[:, :kmax], 0.0), axis=1)
    shares = (raw[:, :kmax] / raw.sum(axis=1, keepdims=True))[mask]
    return rows_b.astype(np.int64), rows_l.astype(np.int64), shares


def preferential_attachment(k: np.ndarray, n_lenders: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Borrower b's ``k[b]`` lenders, drawn without replacement in proportion to 1 + each
    lender's degree so far (preferential attachment, Barabasi & Albert 1999; sequential by
    construction): row b's first ``k[b]`` cells. The reference syndicates of
    tests/qa/test_golden.py draw with it too."""
    degree = np.zeros(n_lenders)
    out = np.zeros((len(k), n_lenders), dtype=np.int64)
    for b, kb in enumerate(k):
        w = 1.0 + degree
        chosen = rng.choice(n_lenders, size=kb, replace=False, p=w / w.sum())
        degree[chosen] += 1
        out[b, :kb] = chosen
    return out


def read_edgelist(path: str | Path, n_lenders: int) -> np.ndarray:
    """Read ``creditor debtor [weight]`` rows into an (n, n) weight matrix W[debtor, creditor].

    Refuses: a missing or unreadable file, a symbolic link loop, anything but a regular file (a
    directory, FIFO, device or socket, refused from its ``stat`` without being opened), malformed
    rows, unknown nodes, self-loops, negative, non-finite or over-``MAX_EDGELIST_WEIGHT``
    weights, and more than ``MAX_EDGELIST_ROWS`` rows or ``MAX_EDGELIST_BYTES`` bytes (checked
    before parsing, so a huge file is refused at once). A message quotes a bad row only once
    the file has looked like an edge list (an earlier row was valid), and then at most
    ``EXCERPT_CHARS`` printable characters of it: a file that is not an edge list
    (/etc/passwd, /proc/self/environ) is never echoed.
    A self-loop (a lender owed money by itself) is refused, not ignored: a claim on oneself nets
    to zero on one balance sheet, and Eisenberg-Noe / Rogers-Veraart clearing take a liabilities
    matrix with a zero diagonal, so such a row is almost surely a mistake in the file. Cycles
    between two or more lenders are legal.
    """
    try:
        fh = _open_regular(path)
        with io.TextIOWrapper(fh, encoding="utf-8", errors="replace") as text:  # closes fh
            _check_size(fh, Path(path))
            fh.seek(0)
            return _parse_edgelist(text, n_lenders)
    except OSError as e:  # unreadable (permissions, I/O error): bad input, not a write error
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ConfigError(f"network.edgelist: file '{path}' not found") from None
        if e.errno == errno.ELOOP:
            raise ConfigError(f"network.edgelist: '{path}' is a symbolic link loop") from None
        raise ConfigError(f"network.edgelist: cannot read '{path}': {e.strerror or e}") from None


def _open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file (checked by ``stat`` first, so a
    FIFO is never opened and /dev/zero never read; and by ``fstat`` after a non-blocking
    open, in case it changed in between); ConfigError otherwise, OSError if it cannot be."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        fh = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
        mode = os.fstat(fh.fileno()).st_mode
        if stat.S_ISREG(mode):
            return fh
        fh.close()
    raise ConfigError(f"network.edgelist: '{path}' is {file_kind(mode)}, not a regular file")


EXCERPT_CHARS = 40


def _excerpt(line: str) -> str:
    """At most EXCERPT_CHARS characters of a row, non-printable ones shown as '?', quoted."""
    text = "".join(c if " " <= c <= "~" else "?" for c in line.strip()[: EXCERPT_CHARS + 1])
    return repr(text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "...")


def _node(text: str) -> str:
    return text if len(text) <= 20 else f"{text[:17]}..."


def _parse_edgelist(fh, n_lenders: int) -> np.ndarray:
    w = np.zeros((n_lenders, n_lenders))
    rows = 0  # valid rows so far: only then does the file look like an edge list
    for lineno, line in enumerate(fh, 1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        got = f", got {_excerpt(line)}" if rows else ""
        if len(text) not in (2, 3):
            raise ConfigError(f"network.edgelist line {lineno}: expected 'creditor debtor "
                              f"[weight]'{got}")
        try:
            c, d = int(text[0]), int(text[1])
            wt = float(text[2]) if len(text) == 3 else 1.0
        except ValueError:
            raise ConfigError(f"network.edgelist line {lineno}: not numbers (expected "
                              f"'creditor debtor [weight]'){got}") from None
        if not (0 <= c < n_lenders and 0 <= d < n_lenders):
            raise ConfigError(f"network.edgelist line {lineno}: unknown node "
                              f"{_node(str(c if not 0 <= c < n_lenders else d))} (lenders are "
                              f"0..{n_lenders - 1})")
        if c == d:
            raise ConfigError(f"network.edgelist line {lineno}: self-loop on lender {c}")
        if not np.isfinite(wt) or not 0 <= wt <= MAX_EDGELIST_WEIGHT:
            raise ConfigError(f"network.edgelist line {lineno}: weight {wt} must be a "
                              f"number in [0, {MAX_EDGELIST_WEIGHT:g}] (weights are relative)")
        w[d, c] += wt
        rows += 1
    return w


def _check_size(fh: BinaryIO, p: Path) -> None:
    """Refuse an oversized edge list before parsing it: bytes first, then rows.

    Rows are counted in 1 MiB binary chunks and counting stops at the limit, so a file of
    10 million rows is refused after reading about a tenth of it; a file reporting no size
    (/proc) is cut at the byte limit too.
    """
    limit = f"(the limit is {MAX_EDGELIST_ROWS:,} rows, {MAX_EDGELIST_BYTES // 2**20} MiB)"
    size = os.fstat(fh.fileno()).st_size
    if size > MAX_EDGELIST_BYTES:
        raise ConfigError(f"network.edgelist: '{p}' is {size / 2**20:,.0f} MiB {limit}")
    rows, last, read = 0, b"\n", 0
    while chunk := fh.read(2**20):
        read += len(chunk)
        if read > MAX_EDGELIST_BYTES:
            raise ConfigError(f"network.edgelist: '{p}' is larger than "
                              f"{MAX_EDGELIST_BYTES // 2**20} MiB {limit}")
        rows += chunk.count(b"\n")
        last = chunk[-1:]
        if rows + (last != b"\n") > MAX_EDGELIST_ROWS:
            raise ConfigError(f"network.edgelist: more than {MAX_EDGELIST_ROWS:,} rows in "
                              f"'{p}' {limit}")


def funding_weights(n: int, cfg: NetworkCfg, rng: np.random.Generator) -> np.ndarray:
    """W[i, j] > 0 when lender j funds lender i; rows are normalised by the caller."""
    if n < 2:
        return np.zeros((n, n))
    z = cfg.funding_degree
    seed = int(rng.integers(2**31 - 1))
    if cfg.kind == "edgelist":
        return read_edgelist(cfg.edgelist, n)
    if cfg.kind == "scale_free":
        g = nx.scale_free_graph(n, seed=seed)
        w = nx.to_numpy_array(nx.DiGraph(g), nodelist=range(n), weight=None)
    elif cfg.kind == "core_periphery":
        n_core = max(1, int(round(cfg.core_share * n)))
        w = np.zeros((n, n))
        w[:n_core, :n_core] = 1.0
        p = min(1.0, z / n_core)
        w[n_core:, :n_core] = rng.random((n - n_core, n_core)) < p
    else:
        w = gnp_directed(n, min(1.0, z / (n - 1)), seed)
    np.fill_diagonal(w, 0.0)
    return w.T.copy() if cfg.kind in ("erdos_renyi", "scale_free") else w


def gnp_directed(n: int, p: float, seed: int) -> np.ndarray:
    """The adjacency matrix (``A[i, j] = 1.0`` for an edge i -> j) of networkx's directed
    G(n, p), ``nx.gnp_random_graph(n, p, seed=seed, directed=True)`` read by
    ``nx.to_numpy_array(g, nodelist=range(n), weight=None)``, without building the graph: the
    same draws of ``random.Random(seed)``, one per ordered pair (i, j), i != j, in
    ``itertools.permutations`` order (row by row, the diagonal skipped), an edge where the draw
    is below p; p >= 1 is the complete graph, p <= 0 the empty one. Building the networkx
    graph and reading it back was 15 % of a crypto_winter model's build."""
    w = np.zeros((n, n))
    if p >= 1:
        w[~np.eye(n, dtype=bool)] = 1.0
    elif p > 0:
        draw = random.Random(seed).random
        w[~np.eye(n, dtype=bool)] = np.array([draw() for _ in range(n * (n - 1))]) < p
    return w


def funding_book(external: np.ndarray, interbank_share: np.ndarray, capital_ratio: np.ndarray,
                 w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lenders' funding at t0 from their external assets and the funding weights.

    Lender i borrows ``ib_i = s_i e_i`` from other lenders (``s_i`` its type's
    ``interbank_share``, ``e_i`` its external assets: loans + cash), split over its funders in
    proportion to ``W[i, j]`` (``W`` from :func:`funding_weights`; an unfunded lender borrows
    nothing from lenders):

        L[i, j] = ib_i W[i, j] / sum_k W[i, k],     a_i = e_i + sum_k L[k, i],
        outside_i = max(a_i (1 - c_i) - ib_i, 0),

    so that equity, a_i - ib_i - outside_i, is ``c_i a_i`` (``c_i`` the type's
    ``capital_ratio``). Returns ``(L, outside)``: ``L[i, j]`` is what i owes j (the liabilities
    convention of Eisenberg & Noe 2001). ``LiquidationModel._originate`` builds the model's
    network with it; the validation's Gai-Kapadia reduced mode (``sim.qa.checks.gk_network``,
    check 2g-2i) reuses it on redrawn networks."""
    wsum = w.sum(axis=1)
    ib = np.where(wsum > 0, interbank_share * external, 0.0)
    interbank = np.divide(w * ib[:, None], wsum[:, None], out=np.zeros_like(w),
                          where=wsum[:, None] > 0)
    total = external + interbank.sum(axis=0)
    outside = np.maximum(total * (1.0 - capital_ratio) - ib, 0.0)
    return interbank, outside


def build_graph(model) -> nx.MultiDiGraph:
    """The whole network as a networkx MultiDiGraph with integer node ids.

    Node attributes: ``name``, ``kind`` (agent type), ``state``, ``size`` (balance sheet, $).
    Edge attributes: ``kind`` in {loan, funding, guarantee} and ``amount`` ($).
    """
    g = nx.MultiDiGraph()
    for a in model.network_agents:
        g.add_node(a.node, name=a.name, kind=a.kind, state=a.state, size=float(a.size))
    loans = model.loans
    exp = loans.exposure
    bnode = model.borrower_node
    lnode = model.lender_node
    for r in np.flatnonzero(exp > 0):
        g.add_edge(int(lnode[loans.lender[r]]), int(bnode[loans.borrower[r]]), kind="loan",
                   amount=float(exp[r]))
    liab = model.interbank
    for i, j in zip(*np.nonzero(liab), strict=True):
        g.add_edge(int(lnode[j]), int(lnode[i]), kind="funding", amount=float(liab[i, j]))
    bb = model.borrowers
    hyp = model.guarantor_node
    if hyp is not None:
        for b in np.flatnonzero(bb.guaranteed):
            g.add_edge(int(hyp), int(bnode[b]), kind="guarantee", amount=0.0)
    return g
