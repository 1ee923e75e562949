"""The golden cases give the same bits under every CPU setting this machine can imitate.

Each setting runs every case of ``sim.qa.bench.GOLDEN_CASES`` in a fresh subprocess whose
environment makes numpy, OpenBLAS, glibc and numba behave as on another x86-64 CPU, and
compares the fingerprints with ``tests/data/golden.json`` (recorded once under the
deterministic numerics of ``sim.core.numerics``):

* ``NPY_DISABLE_CPU_FEATURES``: numpy's SIMD dispatch level (unset: this CPU's best, e.g.
  AVX-512; ``AVX512_ICL X86_V4``: AVX2; ``AVX512_ICL X86_V4 X86_V3``: SSE4.2 baseline);
* ``OPENBLAS_CORETYPE``: OpenBLAS's kernel (Haswell, SkylakeX, Prescott);
* ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA``: glibc's libm without its FMA variants
  (whose ``exp``/``log1p``/``pow`` differ in the last bit from the FMA ones);
* ``NUMBA_CPU_NAME=generic``: numba's kernels compiled for a generic x86-64 (no AVX);
  ``NUMBA_CPU_NAME=haswell``: for AVX2 with FMA instructions available, which LLVM may not
  use to fuse a multiply and an add without fast-math (the compiled phase kernels of
  ``sim.world.kernels`` run in every golden case, the model's default engine).

A setting the machine cannot run (numpy refuses to disable a feature it lacks, OpenBLAS has
no such kernel for it, or the process dies) is skipped with the reason in the test output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here takes over a second or so

ROOT = Path(__file__).resolve().parents[2]
NPY = {"native": None, "avx2": "AVX512_ICL X86_V4", "sse4": "AVX512_ICL X86_V4 X86_V3"}
BLAS = ("Haswell", "SkylakeX", "Prescott")
SETTINGS = [(f"numpy-{n}+blas-{b}", {"NPY_DISABLE_CPU_FEATURES": v, "OPENBLAS_CORETYPE": b})
            for n, v in NPY.items() for b in BLAS]
SETTINGS += [
    ("libm-without-fma", {"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"}),
    ("avx2-cpu: numpy-avx2+numba-haswell",
     {"NPY_DISABLE_CPU_FEATURES": NPY["avx2"], "NUMBA_CPU_NAME": "haswell"}),
    ("old-cpu: sse4+prescott+libm-without-fma+numba-generic",
     {"NPY_DISABLE_CPU_FEATURES": NPY["sse4"], "OPENBLAS_CORETYPE": "Prescott",
      "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA", "NUMBA_CPU_NAME": "generic"}),
]

# a BLAS product and a libm call, so a setting that crashes them is seen before the real work
PROBE = ("import math, numpy as np; a = np.ones((64, 64)); assert (a @ a).sum() == 64**3; "
         "math.exp(0.5); "
         "from numpy._core._multiarray_umath import __cpu_dispatch__ as d, "
         "__cpu_features__ as f; print(','.join(t for t in d if f.get(t)))")
CHILD = ("import json; from sim.qa.bench import GOLDEN_PATH, golden_fingerprints, "
         "golden_mismatches; from sim.core.numerics import platform_info; "
         "g = json.loads(GOLDEN_PATH.read_text()); "
         "print(json.dumps({'bad': golden_mismatches(g, golden_fingerprints()), "
         "'simd': platform_info()['simd']}))")


def _env(overrides: dict) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NPY_DISABLE_CPU_FEATURES", "GLIBC_TUNABLES", "NUMBA_CPU_NAME")}
    preset = os.environ.get("OPENBLAS_CORETYPE")
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "OPENBLAS_CORETYPE" and preset:
            continue  # this machine sets its kernel for correctness: keep it (see _blas_note)
        env[k] = v
    return env


def _run(code: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(("label", "overrides"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_golden_cases_are_identical_under_every_cpu_setting(label, overrides):
    preset = os.environ.get("OPENBLAS_CORETYPE")
    if preset and overrides.get("OPENBLAS_CORETYPE") not in (None, preset):
        pytest.skip(f"{label}: this machine sets OPENBLAS_CORETYPE={preset} (other kernels "
                    "compute wrong results or crash on it), so only that kernel runs here")
    env = _env(overrides)
    probe = _run(PROBE, env, 120)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        pytest.skip(f"{label}: this machine cannot run the setting ({why[:200]})")
    res = _run(CHILD, env, 900)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{label}: numpy dispatches to {probe.stdout.strip() or 'baseline only'}; "
          f"{len(out['bad'])} mismatches")
    assert out["simd"] == [t for t in probe.stdout.strip().split(",") if t]
    assert out["bad"] == [], f"{label}: {out['bad'][:10]}"


def test_the_settings_change_what_they_claim_to_change():
    """The environment variables really move numpy's dispatch and glibc's libm on this
    machine (else the test above would prove nothing): numpy's exp gives other bits under a
    lower dispatch level where the CPU has AVX-512, and libm's exp differs without FMA."""
    code = ("import math, hashlib, numpy as np; x = np.linspace(-700, 700, 200001); "
            "print(hashlib.sha256(np.exp(x).tobytes()).hexdigest()[:16], "
            "hashlib.sha256(repr([math.exp(v) for v in x[::7]]).encode()).hexdigest()[:16])")
    native = _run(code, _env({}), 120).stdout.split()
    avx2 = _run(code, _env({"NPY_DISABLE_CPU_FEATURES": NPY["avx2"]}), 120)
    nofma = _run(code, _env({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"}), 120)
    probe = _run(PROBE, _env({}), 120).stdout
    if "AVX512_ICL" in probe or "X86_V4" in probe:
        assert avx2.returncode == 0 and avx2.stdout.split()[0] != native[0]
    else:
        print("this CPU has no AVX-512: numpy's dispatch levels may agree here")
    if "FMA3" in _run("from numpy._core._multiarray_umath import __cpu_features__ as f; "
                      "print(' '.join(k for k, v in f.items() if v))", _env({}), 60).stdout:
        assert nofma.returncode == 0 and nofma.stdout.split()[1] != native[1]


def test_verify_reproduces_a_run_made_under_another_cpu_setting(tmp_path, capsys):
    """A results directory written by a process imitating an old CPU (SSE4.2 dispatch,
    Prescott BLAS, libm without FMA) is reproduced exactly here, and the report notes the
    other setting as one the results do not depend on."""
    from sim.cli import main

    old = dict(SETTINGS)["old-cpu: sse4+prescott+libm-without-fma+numba-generic"]
    env = _env(old)
    if _run(PROBE, env, 120).returncode != 0:
        pytest.skip("this machine cannot imitate the old CPU")
    out = tmp_path / "made_elsewhere"
    made = subprocess.run([sys.executable, "-m", "sim.cli", "run", "crypto_winter", "--months",
                           "18", "--no-figures", "--out", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.strip().endswith(f"{out}: reproduced exactly")
    assert "note: another CPU setting (" in text and "'NUMBA_CPU_NAME': 'generic'" in text
