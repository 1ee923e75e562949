"""sim.__version__ names the code from the git state (sim/core/version.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import sim
from sim.core import version as v


def test_version_names_the_commit_checked_out():
    if shutil.which("git") is None or not (v.SOURCE_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    pytest.importorskip("setuptools_scm")
    git = ["git", "-C", str(v.SOURCE_ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short=7", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tag = subprocess.run([*git, "describe", "--exact-match", "--tags", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if tag.returncode == 0 and not dirty:  # a clean release checkout is named by its tag
        assert v.liqsim_version() == tag.stdout.strip().removeprefix("v")
    else:
        assert f"+g{head}" in v.liqsim_version() or f".g{head}" in v.liqsim_version()
    assert sim.__version__ == v.liqsim_version()


def test_without_git_the_metadata_then_unknown(tmp_path, monkeypatch):
    assert v._from_git(tmp_path) is None  # no .git: not asked
    monkeypatch.setattr(v, "_from_metadata", lambda: None)
    monkeypatch.setattr(v, "SOURCE_ROOT", tmp_path)
    v.liqsim_version.cache_clear()
    try:
        assert v.liqsim_version() == v.UNKNOWN == "0+unknown"
    finally:
        v.liqsim_version.cache_clear()


@pytest.mark.slow
def test_reading_the_version_loads_no_model():
    code = ("import sys, sim.core.version; sim.core.version.liqsim_version(); "
            "print('sim.world.model' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"

