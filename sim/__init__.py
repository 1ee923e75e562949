"""liqsim: an agent-based simulator of the liquidation market for repossessed AI GPUs.

The public Python API (everything else is internal and may change)::

    import sim

    res = sim.run("crypto_winter", seed=7, months=24, overrides={"policy.repo.enabled": True})
    res.summary["credit_losses"]     # headline metrics (dict, as summary.json)
    res.series                       # one row per month (pandas DataFrame, as series.parquet)
    res.events                       # the event log (DataFrame, as events.parquet)

    m = sim.LiquidationModel("crypto_winter", rng=7, months=24, **{"policy.repo.enabled": True})
    m.run()
    m.datacollector.get_model_vars_dataframe()   # Mesa DataCollector interface
    sim.summary(m)

* :class:`LiquidationModel` -- the Mesa model; takes a scenario name, TOML path or
  :class:`Scenario`, ``rng``/``seed``, ``months`` and overrides (``mesa.batch_run`` works);
* :func:`load_scenario` -- a validated :class:`Scenario` from a name or path plus overrides;
* :func:`run` -- build, run and tabulate one model (:class:`RunResult`);
* :func:`summary` -- the headline metrics of a model (what ``summary.json`` holds);
* :class:`ConfigError` -- raised for any bad scenario, override or value (one-line message);
* ``__version__`` -- the liqsim version, named from the git state (:mod:`sim.core.version`).

The names are loaded on first use, so ``import sim`` (and every ``liqsim`` command) stays fast.

The agents live in the top-level package ``agents`` (the folder ``agents/`` beside ``sim/``).
Another popular package, ``openai-agents``, installs a module of that same name; importing
``sim`` makes sure that the name ``agents`` means liqsim's folder for liqsim's own imports
(:func:`_bind_agents`), whichever comes first on ``sys.path``. The two cannot both be imported
as ``agents`` into one Python process: see the README ("Using liqsim from Python").
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and editors
    from sim.api import RunResult, run
    from sim.core.config import ConfigError, Scenario, load_scenario
    from sim.world.metrics import summary
    from sim.world.model import LiquidationModel

__all__ = ["ConfigError", "LiquidationModel", "RunResult", "Scenario", "__version__",
           "load_scenario", "run", "summary"]

_LAZY = {"LiquidationModel": "sim.world.model", "load_scenario": "sim.core.config",
         "Scenario": "sim.core.config", "ConfigError": "sim.core.config", "run": "sim.api",
         "RunResult": "sim.api", "summary": "sim.world.metrics"}

AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"


class AgentsNameClash(ImportError):
    """Another package was imported as ``agents`` before liqsim needed its own."""


def _is_ours(paths) -> bool:
    return any(Path(p).resolve() == AGENTS_DIR for p in (paths or ()))


def _bind_agents() -> None:
    """Make the module name ``agents`` mean liqsim's ``agents/`` folder.

    Nothing to do when ``agents`` already resolves to it (a source checkout, or the editable
    install with no other ``agents`` on the path). When another package of that name would be
    found first (e.g. ``openai-agents`` installed in the same environment), liqsim's package is
    loaded from its folder and registered as ``agents``, so ``sim.world.model``'s
    ``from agents.borrower import ...`` gets liqsim's code. If another ``agents`` is *already
    imported*, it cannot be replaced without breaking its users: :class:`AgentsNameClash`.
    """
    loaded = sys.modules.get("agents")
    if loaded is not None:
        if _is_ours(getattr(loaded, "__path__", None)):
            return
        where = getattr(loaded, "__file__", None) or "?"
        raise AgentsNameClash(
            f"liqsim needs the module name 'agents' for its own agents/ folder ({AGENTS_DIR}), "
            f"but another package was already imported as 'agents' ({where}); "
            "import sim before that package (it then finds liqsim's), or run it in another "
            "process")
    if not (AGENTS_DIR / "__init__.py").is_file():
        return  # not a liqsim tree: nothing to bind (the normal import will say what is wrong)
    spec = importlib.util.find_spec("agents")
    if spec is not None and _is_ours(spec.submodule_search_locations):
        return
    spec = importlib.util.spec_from_file_location(
        "agents", AGENTS_DIR / "__init__.py", submodule_search_locations=[str(AGENTS_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop("agents", None)
        raise


_bind_agents()


def __getattr__(name: str) -> Any:
    if name == "__version__":  # not cached here: sim.core.version caches it
        from sim.core.version import liqsim_version  # lazy, as the names of _LAZY

        return liqsim_version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
