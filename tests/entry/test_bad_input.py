"""Bad input, table-driven (issue 7): exit code 2 and one line naming the problem, never a trace.

This table extends the one in ``tests/entry/test_cli.py`` (whose cases are not repeated here) and is
checked by the same function: exit code 2, exactly one stderr line starting ``liqsim: error:``
that contains every listed fragment, no traceback, no results written. Between them the two
tables cover every category the issue names: malformed TOML, unknown keys, wrong types,
negative prices, LTV above 1, probabilities outside [0, 1], months <= 0, a missing or malformed
network file (unknown node, negative exposure, self-loop), an edge list of 10 million rows (a
limit, refused fast) and worlds too large to fit in memory; plus ``liqsim verify`` on a
missing directory, a missing or corrupt manifest. Sweep-spec input is tested with the sweep.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import test_cli
from test_cli import GEN, write_file

from sim.cli import main

TEN_MILLION = 10_000_000


def _run_toml(name: str, text: str | bytes):
    return lambda t: ["run", "--no-figures", "--out", str(t / "out"), write_file(t, name, text)]


def _set(*assignments: str):
    argv = ["run", "--no-figures", "--months", "2"]
    for a in assignments:
        argv += ["--set", a]
    return lambda t: [*argv, "--out", str(t / "out")]


def _edgelist_argv(t, path, *extra: str) -> list[str]:
    argv = ["run", "--no-figures", "--out", str(t / "out"), "--set", "network.kind=edgelist",
            "--set", f"network.edgelist={path}"]
    for a in extra:
        argv += ["--set", a]
    return argv


def _edges(data: str | bytes, *extra: str):
    def build(t):
        path = t / "edges.txt"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return _edgelist_argv(t, path, *extra)
    return build


def _ten_million_rows(t):
    """10 million 'creditor debtor' rows (40 MB), written in one go (~0.1 s)."""
    path = t / "huge.txt"
    path.write_bytes(b"0 1\n" * TEN_MILLION)
    return _edgelist_argv(t, path)


def _sparse_edgelist(t):
    """A 129 MiB edge list (a sparse file: no time spent writing it), over the byte limit."""
    path = t / "sparse.txt"
    with path.open("wb") as fh:
        fh.truncate(129 * 2**20)
    return _edgelist_argv(t, path)


def _sparse(t, name: str, size: int) -> str:
    """A sparse file of ``size`` bytes (no time spent writing it)."""
    path = t / name
    with path.open("wb") as fh:
        fh.truncate(size)
    return str(path)


def _fifo(t, name: str) -> str:
    os.mkfifo(t / name)
    return str(t / name)


def _loop(t, name: str) -> str:
    """A symbolic link to itself (stat: ELOOP)."""
    os.symlink(name, t / name)
    return str(t / name)


def _dotted_key(parts: int) -> str:
    return ".".join(["a"] * parts) + " = 1\n"


def _verify_big_input(t):
    """A manifest naming a 2 GiB funding edge list (a sparse file) as the run's input."""
    edges = _sparse(t, "edges.txt", 2 * 2**30)
    return _results(t, _manifest(inputs={"network.edgelist": {"path": edges, "sha256": "0"}}))


def _results(t, manifest: str | None):
    d = t / "res"
    d.mkdir()
    if manifest is not None:
        (d / "manifest.json").write_text(manifest, encoding="utf-8")
    return ["verify", str(d)]


GOOD_MANIFEST = {"manifest_version": 1, "seed": 7, "config": {"seed": 7, "months": 2},
                 "files": {}}


def _manifest(**changes) -> str:
    data = {**GOOD_MANIFEST, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


# (id, argv builder taking tmp_path, fragments the one error line must contain)
CASES = [
    # ---- malformed TOML
    ("toml-duplicate-key", _run_toml("dupkey.toml", "months = 3\nmonths = 4\n"),
     ["dupkey.toml", "malformed TOML"]),
    ("toml-duplicate-table",
     _run_toml("duptable.toml", "[lenders]\ncount = 3\n[lenders]\ncount = 4\n"),
     ["duptable.toml", "malformed TOML"]),
    ("toml-bad-escape", _run_toml("esc.toml", 'description = "bad \\q escape"\n'),
     ["esc.toml", "malformed TOML"]),
    ("toml-unterminated-array", _run_toml("arr.toml", "[[shocks]]\nmonth = [1, 2\n"),
     ["arr.toml", "malformed TOML"]),
    ("toml-missing-key", _run_toml("nokey.toml", "= 3\n"), ["nokey.toml", "malformed TOML"]),
    ("toml-invalid-date", _run_toml("date.toml", "months = 2025-13-45\n"),
     ["date.toml", "malformed TOML"]),
    ("toml-control-bytes", _run_toml("bin.toml", b"\x00\x01PK\x03\x04 = 1\n"),
     ["bin.toml", "malformed TOML"]),
    # ---- unknown keys
    ("unknown-section-typo", _run_toml("typo.toml", "[environmnet]\nsofr = 0.04\n"),
     ["unknown key 'environmnet'"]),
    ("unknown-key-in-generation",
     _run_toml("gen.toml", GEN.format(name="X1") + "colour = 'red'\n"),
     ["unknown key 'environment.generations.0.colour'"]),
    ("unknown-key-in-shock",
     _run_toml("shk.toml", "[[shocks]]\nmonth = 3\nkind = 'btc'\nsize = 0.5\nduration = 2\n"),
     ["unknown key 'shocks.0.duration'"]),
    ("unknown-key-buyer-type", _set("buyers.types.tier2.bogus=1"),
     ["unknown key 'buyers.types.tier2.bogus'"]),
    ("unknown-key-misspelt-repo", _set("policy.repo.haircut=0.2"),
     ["unknown key 'policy.repo.haircut'"]),
    ("unknown-key-wrong-case", _set("Months=12"), ["unknown key 'Months'"]),
    # ---- wrong types
    ("wrong-type-string-float-toml",
     _run_toml("sofr.toml", '[environment]\nsofr = "four percent"\n'),
     ["environment.sofr = 'four percent'", "valid number"]),
    ("wrong-type-list-for-float", _set("environment.pue=[1, 2]"),
     ["environment.pue = [1, 2]", "valid number"]),
    ("wrong-type-table-for-list", _set("environment.generations={a = 1}"),
     ["environment.generations", "valid list"]),
    ("wrong-type-number-for-name", _set("name=5"), ["name = 5", "valid string"]),
    ("wrong-type-bool", _set("policy.repo.enabled=maybe"),
     ["policy.repo.enabled = 'maybe'", "valid boolean"]),
    ("wrong-type-shocks-not-list", _set("shocks=5"), ["shocks = 5", "valid list"]),
    ("wrong-type-fleet-mix-item", _set('borrowers.miner.fleet_mix=["a"]'),
     ["borrowers.miner.fleet_mix.0 = 'a'", "valid number"]),
    # ---- negative prices and costs
    ("negative-list-price", _set("environment.generations.1.list_price=-27500"),
     ["environment.generations.1.list_price = -27500", "greater than 0"]),
    ("zero-rent", _set("environment.generations.0.rent0=0"),
     ["environment.generations.0.rent0 = 0", "greater than 0"]),
    ("negative-power-price", _set("environment.power_price=-50"),
     ["environment.power_price = -50", "greater than or equal to 0"]),
    ("negative-hashprice", _set("environment.hashprice0=-1.5"),
     ["environment.hashprice0 = -1.5", "greater than or equal to 0"]),
    ("negative-integration-cost", _set("buyers.types.tier2.integration_cost=-1"),
     ["buyers.types.tier2.integration_cost = -1", "greater than or equal to 0"]),
    ("negative-holding-cost", _set("lenders.holding_cost=-60"),
     ["lenders.holding_cost = -60", "greater than or equal to 0"]),
    # ---- LTV out of range
    ("ltv-just-above-one", _set("borrowers.neocloud.ltv=1.01"),
     ["borrowers.neocloud.ltv = 1.01", "less than or equal to 1"]),
    ("ltv-zero", _set("borrowers.miner.ltv=0"),
     ["borrowers.miner.ltv = 0", "greater than 0"]),
    ("ltv-covenant-too-high", _set("lenders.ltv_max=2.5"),
     ["lenders.ltv_max = 2.5", "less than or equal to 2"]),
    # ---- probabilities and shares outside [0, 1]
    ("tenant-default-above-one", _set("borrowers.tenant_default_calm=1.5"),
     ["borrowers.tenant_default_calm = 1.5", "less than or equal to 1"]),
    ("tenant-default-negative", _set("borrowers.tenant_default_stress=-0.01"),
     ["borrowers.tenant_default_stress = -0.01", "greater than or equal to 0"]),
    ("guarantee-prob-above-one", _set("borrowers.miner.guarantee_prob=1.0001"),
     ["borrowers.miner.guarantee_prob = 1.0001", "less than or equal to 1"]),
    ("shock-size-above-one",
     _run_toml("big.toml", "[[shocks]]\nmonth = 3\nkind = 'rent'\nsize = 1.5\n"),
     ["shocks.0.size = 1.5", "less than or equal to 1"]),
    ("utilisation-above-one", _set("environment.utilisation=1.2"),
     ["environment.utilisation = 1.2", "less than or equal to 1"]),
    ("auction-k-negative", _set("market.k=-0.5"),
     ["market.k = -0.5", "greater than or equal to 0"]),
    ("contagion-alpha-above-one", _set("contagion.alpha=2"),
     ["contagion.alpha = 2", "less than or equal to 1"]),
    ("lender-share-above-one", _set("lenders.types.abl.share=1.5"),
     ["lenders.types.abl.share = 1.5", "less than or equal to 1"]),
    ("correlation-below-minus-one", _set("environment.rho_stress=-1.1"),
     ["environment.rho_stress = -1.1", "greater than or equal to -1"]),
    # ---- months <= 0 (and other month counts)
    ("months-negative-flag", lambda t: ["run", "--months", "-1"],
     ["months = -1", "greater than or equal to 1"]),
    ("months-zero-toml", _run_toml("m0.toml", "months = 0\n"),
     ["months = 0", "greater than or equal to 1"]),
    ("shock-month-negative",
     _run_toml("sm.toml", "[[shocks]]\nmonth = -1\nkind = 'btc'\nsize = 0.5\n"),
     ["shocks.0.month = -1", "greater than or equal to 1"]),
    ("loan-term-zero", _set("borrowers.miner.term_months=0"),
     ["borrowers.miner.term_months = 0", "greater than or equal to 1"]),
    # ---- network edge list: malformed, unknown nodes, negative exposure, self-loops, size
    ("edgelist-negative-node", _edges("-1 2\n"),
     ["network.edgelist line 1", "unknown node -1", "0..19"]),
    ("edgelist-node-equal-to-count", _edges("0 3\n", "lenders.count=3"),
     ["network.edgelist line 1", "unknown node 3", "0..2"]),
    ("edgelist-nan-weight", _edges("0 1 nan\n"),
     ["network.edgelist line 1", "weight nan", "must be a number in [0, 1e+15]"]),
    ("edgelist-overflowing-weight", _edges("0 1 1.0\n0 2 1e400\n"),
     ["network.edgelist line 2", "weight inf", "must be a number in [0, 1e+15]"]),
    ("edgelist-negative-exposure-csv", _edges("3,5,-0.5\n"),
     ["network.edgelist line 1", "weight -0.5", "must be a number in [0, 1e+15]"]),
    ("edgelist-huge-weight", _edges("0 1 1e300\n"),
     ["network.edgelist line 1", "weight 1e+300", "must be a number in [0, 1e+15]"]),
    ("edgelist-self-loop-csv", _edges("0,1,1.0\n2,2,1.0\n"),
     ["network.edgelist line 2", "self-loop on lender 2"]),
    ("edgelist-four-columns", _edges("0 1 2 3\n"),
     ["network.edgelist line 1", "expected 'creditor debtor [weight]'"]),
    ("edgelist-fractional-node", _edges("0.5 1\n"),
     ["network.edgelist line 1", "not numbers"]),
    ("edgelist-binary-garbage", _edges(b"\xff\xfe\x00\x01 \x02\n"),
     ["network.edgelist line 1", "not numbers"]),
    ("edgelist-ten-million-rows", _ten_million_rows,
     ["network.edgelist", "more than 1,000,000 rows", "huge.txt"]),
    ("edgelist-over-byte-limit", _sparse_edgelist,
     ["network.edgelist", "sparse.txt", "129 MiB", "limit"]),
    ("edgelist-symlink-loop", lambda t: _edgelist_argv(t, _loop(t, "loop.txt")),
     ["network.edgelist: '", "loop.txt' is a symbolic link loop"]),
    ("edgelist-fifo", lambda t: _edgelist_argv(t, _fifo(t, "fifo.txt")),
     ["network.edgelist: '", "fifo.txt' is a FIFO (named pipe), not a regular file"]),
    ("edgelist-dev-zero", lambda t: _edgelist_argv(t, "/dev/zero"),
     ["network.edgelist: '/dev/zero' is a character device, not a regular file"]),
    ("edgelist-not-an-edge-list", _edges("root:x:0:0:root:/root:/bin/bash\n"),
     ["network.edgelist line 1: expected 'creditor debtor [weight]'"]),
    # ---- scenario files: size and complexity limits, checked before parsing; not regular
    ("scenario-over-size-limit", lambda t: ["run", _sparse(t, "big.toml", 2 * 2**30)],
     ["big.toml is 2,048 MiB; the limit is 1 MiB"]),
    ("scenario-just-over-size-limit",
     _run_toml("desc.toml", 'description = "' + "x" * 2**20 + '"\n'),
     ["desc.toml is 1,048,593 bytes; the limit is 1 MiB"]),
    ("scenario-dotted-key-200000-parts", _run_toml("dotted.toml", _dotted_key(200_000)),
     ["dotted.toml: line 1: a dotted key of more than 32 parts (the limit)"]),
    ("scenario-quoted-dotted-key-33-parts",
     _run_toml("quoted.toml", "\n" + ".".join(['"a"'] * 33) + " = 1\n"),
     ["quoted.toml: line 2: a dotted key of more than 32 parts"]),
    ("scenario-table-header-33-parts",
     _run_toml("header.toml", "[" + ".".join(["t"] * 33) + "]\n"),
     ["header.toml: line 1: a dotted key of more than 32 parts"]),
    ("scenario-5000-digit-integer", _run_toml("digits.toml", "months = " + "1" * 5000 + "\n"),
     ["digits.toml: unreadable TOML value", "4300 digits"]),
    ("scenario-80000-bit-integer", _run_toml("hex.toml", "months = 0x" + "f" * 20_000 + "\n"),
     ["months = <an integer of 80,000 bits>", "less than or equal to 600"]),
    ("scenario-fifo", lambda t: ["run", _fifo(t, "fifo.toml")],
     ["scenario '", "fifo.toml' is a FIFO (named pipe), not a regular file"]),
    ("scenario-symlink-loop", lambda t: ["run", _loop(t, "loop.toml")],
     ["scenario '", "loop.toml' is a symbolic link loop"]),
    ("scenario-dev-zero", lambda t: ["run", "/dev/zero"],
     ["scenario '/dev/zero' is a character device, not a regular file"]),
    ("scenario-name-outside-the-shipped-folder", lambda t: ["run", "../scenarios/baseline"],
     ["scenario '../scenarios/baseline' not found"]),
    # ---- worlds too large to hold in memory
    ("too-many-lenders", _set("lenders.count=100000"),
     ["lenders.count = 100000", "too large", "5,000"]),
    ("too-many-borrowers", _set("borrowers.miner.count=1000000"),
     ["borrowers", "1,000,060", "too large"]),
    ("syndicate-draws-too-large", _set("borrowers.miner.count=199940", "lenders.count=1000"),
     ["borrowers x lenders = 200,000 x 1,000", "too large", "100,000,000"]),
    ("panel-too-large",
     lambda t: ["run", "--no-figures", "--months", "600", "--set", "borrowers.miner.count=150000",
                "--set", "buyers.types.broker.count=100000", "--out", str(t / "out")],
     ["(months + 1) x agents", "too large"]),
    # ---- liqsim verify: the directory or its manifest cannot be used
    ("verify-missing-dir", lambda t: ["verify", str(t / "nope")],
     ["results directory", "nope", "not found"]),
    ("verify-not-a-dir", lambda t: ["verify", write_file(t, "file.txt", "x")],
     ["file.txt", "is not a directory"]),
    ("verify-no-manifest", lambda t: _results(t, None), ["manifest.json", "no manifest"]),
    ("verify-manifest-not-json", lambda t: _results(t, '{"seed": 1,'),
     ["manifest.json", "corrupt manifest"]),
    ("verify-manifest-not-object", lambda t: _results(t, "[1, 2]"),
     ["manifest.json", "expected a JSON object"]),
    ("verify-manifest-no-files", lambda t: _results(t, _manifest(files=None)),
     ["manifest.json", "'files' missing"]),
    ("verify-manifest-bad-version", lambda t: _results(t, _manifest(manifest_version=99)),
     ["manifest.json", "unsupported manifest_version 99"]),
    ("verify-manifest-bad-config",
     lambda t: _results(t, _manifest(config={"seed": 7, "bogus": 1})),
     ["manifest.json", "config: unknown key 'bogus'"]),
    ("verify-manifest-seed-mismatch", lambda t: _results(t, _manifest(seed=8)),
     ["manifest.json", "seed 8 does not match", "seed 7"]),
    ("verify-manifest-path-in-files",
     lambda t: _results(t, _manifest(files={"../x": {"sha256": "0"}})),
     ["manifest.json", "bad entry for file '../x'"]),
    ("verify-missing-argument", lambda t: ["verify"], ["Missing argument"]),
    ("verify-edgelist-over-size-limit", _verify_big_input,
     ["network.edgelist: '", "edges.txt' (named in the manifest) is 2,048 MiB",
      "the limit is 128 MiB"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("build_argv", "fragments"),
                         [pytest.param(b, f, id=i) for i, b, f in CASES])
def test_bad_input_is_one_line_and_exit_2(build_argv, fragments, tmp_path, capsys,
                                          monkeypatch):
    test_cli.test_bad_input_is_one_line_and_exit_2(build_argv, fragments, tmp_path, capsys,
                                                   monkeypatch)


@pytest.mark.slow
def test_ten_million_row_edge_list_is_refused_fast(tmp_path, capsys):
    """The limit is checked before parsing: 10 M rows are refused in well under a second."""
    argv = _ten_million_rows(tmp_path)
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    assert code == 2 and "more than 1,000,000 rows" in capsys.readouterr().err
    assert elapsed < 2.0, f"took {elapsed:.2f} s"


def test_tables_are_large_distinct_and_cover_every_category():
    ids = [c[0] for c in CASES]
    assert len(CASES) >= 40 and len(set(ids)) == len(ids)
    union = {c[0] for c in test_cli.CASES} | set(ids)
    assert len(union) == len(ids) + len(test_cli.CASES), "a case id repeats test_cli.py's"
    every = " ".join(union)
    for category in ("malformed-toml", "unknown", "wrong-type", "negative", "ltv",
                     "above-one", "months", "edgelist-file-missing", "edgelist-unknown-node",
                     "edgelist-negative", "self-loop", "ten-million-rows", "verify-no-manifest",
                     "verify-manifest-not-json"):
        assert category in every, category
