"""Files that are not what they claim (issue 20): what a refusal may quote, and how fast.

* A message quotes nothing of a file that does not look like an edge list (its first row is
  already bad: /etc/passwd, /proc/self/environ), and at most a short printable excerpt of a
  bad row once earlier rows were valid.
* Messages are printed as they are: rich neither reads ``[...]`` as markup nor ``:x:`` as an
  emoji code, on stderr (errors) or stdout (the run's last line).
* /dev/stdin on a pipe is a FIFO, refused without waiting for it.
* Oversized and overly complex scenario files are refused before parsing, within a second or
  two (a 200,000-part dotted key ran past 120 s; a 2 GB file reached 4.3 GB of memory).

The one-line, exit-2 cases of each point are in the tables of test_bad_input.py and
test_sweep.py; these tests check what the tables cannot: what a line must not contain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.cli import main
from sim.core.config import MAX_KEY_PARTS, ConfigError, read_toml
from sim.core.network import EXCERPT_CHARS, read_edgelist

SECRET = "hunter2-do-not-print"


def _run_edges(tmp: Path, data: bytes, capsys) -> str:
    edges = tmp / "edges.txt"
    edges.write_bytes(data)
    code = main(["run", "--no-figures", "--months", "2", "--out", str(tmp / "out"),
                 "--set", "network.kind=edgelist", "--set", f"network.edgelist={edges}"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("liqsim: error: "), err
    return lines[0]


@pytest.mark.parametrize("data", [
    f"root:x:0:0:root:/root:/bin/bash\nme:{SECRET}:1000:1000::/home/me:/bin/sh\n".encode(),
    f"SHELL=/bin/bash\0TOKEN={SECRET}\0PWD=/work\0".encode(),  # /proc/self/environ
    f"{SECRET} 1\n".encode(),  # two fields, the first not a number
    f"\x1b[31m{SECRET}\x1b[0m 1 2 3\n".encode(),
], ids=["passwd", "environ", "two-fields", "escape-codes"])
def test_a_file_that_is_not_an_edge_list_is_not_quoted(data, tmp_path, capsys):
    line = _run_edges(tmp_path, data, capsys)
    assert line.startswith("liqsim: error: network.edgelist line 1: "), line
    for leak in (SECRET, "root", "SHELL", "TOKEN", "\x1b", "got"):
        assert leak not in line, line


def test_a_bad_row_after_valid_rows_is_quoted_short_and_printable(tmp_path, capsys):
    row = "2 3 \x1b[31m" + "A" * 500 + "\x07"
    line = _run_edges(tmp_path, f"# funding\n0 1\n1 2 0.5\n{row}\n".encode(), capsys)
    head = "liqsim: error: network.edgelist line 4: not numbers (expected 'creditor debtor " \
           "[weight]'), got '"
    assert line.startswith(head), line
    quoted = line[len(head):-1]
    assert quoted == "2 3 ?[31m" + "A" * (EXCERPT_CHARS - 12) + "...", quoted
    assert len(quoted) == EXCERPT_CHARS and "\x1b" not in line


def test_a_huge_node_number_is_not_quoted_whole(tmp_path, capsys):
    line = _run_edges(tmp_path, b"0 1\n" + b"9" * 4000 + b" 1\n", capsys)
    assert "unknown node 99999999999999999..." in line and len(line) < 200, line


@pytest.mark.slow
def test_messages_are_printed_without_markup_or_emoji(tmp_path, capsys):
    """`:x:` was printed as an emoji and `[/]` in --out raised rich's MarkupError after the run
    had been written (a traceback, exit 1)."""
    line = _run_edges(tmp_path, b"0 1\n1 2 :x: [bold]\n", capsys)
    assert line.endswith("got '1 2 :x: [bold]'"), line
    out = tmp_path / "o[/]:x:[bold]"
    assert main(["run", "--no-figures", "--months", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[-1] == f"results written to {out}/", stdout


@pytest.mark.slow
def test_dev_stdin_on_a_pipe_is_a_fifo_and_never_waited_on(tmp_path):
    """/dev/stdin resolves to ``pipe:[N]``, which is no path: the message names /dev/stdin."""
    script = Path(sys.executable).with_name("liqsim")
    argv = [str(script), "run", "--no-figures", "--months", "2", "--out", str(tmp_path / "o"),
            "--set", "network.kind=edgelist", "--set", "network.edgelist=/dev/stdin"]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=tmp_path) as proc:
        out, err = proc.communicate(timeout=120)  # stdin stays open until communicate
    assert proc.returncode == 2, (out, err)
    assert err == ("liqsim: error: network.edgelist: '/dev/stdin' is a FIFO (named pipe), "
                   "not a regular file\n")


def test_a_fifo_edge_list_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="is a FIFO"):
        read_edgelist(fifo, 3)  # opening it would block until a writer came
    assert time.perf_counter() - start < 1.0


@pytest.mark.slow
@pytest.mark.parametrize(("text", "refused"), [
    (".".join(["a"] * 200_000) + " = 1\n", True),
    ("x = 1\n" + ".".join(["a"] * (MAX_KEY_PARTS + 1)) + " = 1\n", True),
    ("[" + ".".join(['"a.b"'] * (MAX_KEY_PARTS + 1)) + "]\n", True),
    (".".join(["a"] * MAX_KEY_PARTS) + " = 1\n", False),  # at the limit: parsed
    # strings and comments are not keys: many dots there are fine
    ('description = "' + ".".join(["w"] * 100) + '"\n# ' + ".".join(["c"] * 100) + "\n",
     False),
    ("description = '''\n" + ".".join(["w"] * 100) + "\n'''\n", False),
    ("x = [" + ", ".join(["1.5"] * 1000) + "]\n", False),
    # pathological for a naive string pattern: many unclosed quoted escapes on one line
    ('x = "' + '\\"' * 300_000 + "\n", None),
], ids=["200000-parts", "33-parts", "quoted-header", "32-parts", "strings-comments",
        "multiline-string", "floats", "escapes"])
def test_dotted_keys_are_limited_before_parsing_in_linear_time(text, refused, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    try:
        read_toml(path)
        outcome = False
    except ConfigError as e:
        outcome = "a dotted key of more than" in str(e)
        assert outcome or refused is None, e
    assert time.perf_counter() - start < 2.0
    if refused is not None:
        assert outcome == refused


def test_oversized_scenario_files_are_refused_before_reading(tmp_path):
    """A 2 GiB file (sparse: reading it would take seconds and 2 GB of memory)."""
    big = tmp_path / "big.toml"
    with big.open("wb") as fh:
        fh.truncate(2 * 2**30)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"big.toml is 2,048 MiB; the limit is 1 MiB"):
        read_toml(big)
    assert time.perf_counter() - start < 0.5
