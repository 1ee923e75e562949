"""docs/architecture.md stays true: every path, dotted name and model attribute it cites exists,
its layer table lists every module of sim/ and agents/ once, and every import points down its
layers."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from sim.world.model import LiquidationModel

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "architecture.md"
TEXT = PAGE.read_text(encoding="utf-8")
TICKED = re.findall(r"`([^`\n]+)`", TEXT)


def _strip_call(name: str) -> str:
    """``step()`` or ``_phase_defaults(marks)`` -> the name without its call."""
    return name.split("(", 1)[0]


def test_cited_paths_exist():
    paths = [t for t in TICKED if re.fullmatch(r"(sim|agents|tests|docs|experiments)/[\w./-]*", t)]
    assert len(paths) > 30
    assert [p for p in paths if not (REPO / p).exists()] == []
    links = re.findall(r"\]\(([^)#:]+)\)", TEXT)
    assert links and [x for x in links if not (PAGE.parent / x).exists()] == []


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_cited_dotted_names_resolve():
    names = {_strip_call(t) for t in TICKED
             if re.fullmatch(r"(sim|agents)(\.\w+)+(\(.*\))?", t)}
    assert len(names) > 30
    bad = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as e:
            bad.append(f"{name}: {e}")
    assert bad == []


def test_cited_model_methods_exist():
    names = {_strip_call(t) for t in TICKED if t.startswith("LiquidationModel.")}
    assert len(names) > 5
    assert [n for n in sorted(names) if not hasattr(LiquidationModel, n.split(".", 1)[1])] == []


def test_every_phase_module_is_in_the_month_table():
    """The month's data-flow table names the ``run`` of every phase module of sim/world/phases/
    (the phases are functions of their modules, not methods of the model)."""
    phases = sorted(p.stem for p in (REPO / "sim" / "world" / "phases").glob("*.py")
                    if p.stem not in ("__init__", "policies"))
    assert len(phases) == 10  # the nine phases and the sites' month between 4 and 5
    cited = {_strip_call(t) for t in TICKED}
    assert [p for p in phases if f"sim.world.phases.{p}.run" not in cited] == []


def test_cited_model_attributes_exist():
    """``model.x.y`` names resolve on a model with every optional book switched on, after a
    month (some attributes are first set by a phase)."""
    model = LiquidationModel("crypto_winter", months=2, **{
        "sites.enabled": True, "policy.lolr.enabled": True,
        "buyers.outside_demand.enabled": True})
    model.step()
    names = {t for t in TICKED if re.fullmatch(r"model(\.\w+)+", t) and t != "model.md"}
    assert len(names) > 30
    bad = []
    for name in sorted(names):
        obj = model
        for attr in name.split(".")[1:]:
            if not hasattr(obj, attr):
                bad.append(name)
                break
            obj = getattr(obj, attr)
    assert bad == []


def _layers() -> dict[str, int]:
    """{module: layer} from the page's layer table."""
    out: dict[str, int] = {}
    for line in TEXT.splitlines():
        m = re.match(r"\| (\d+) [^|]+ \| ([^|]+) \|", line)
        if not m:
            continue
        for path in re.findall(r"`((?:sim|agents)(?:/\w+)*/\w+\.py)`", m.group(2)):
            mod = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            assert mod not in out, f"{mod} is listed twice"
            out[mod] = int(m.group(1))
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _module_of(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a project module or package (``sim.world.phases``
    for ``sim.world.phases.market.run``'s package import ``from sim.world import phases``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 1, -1):
        base = REPO.joinpath(*parts[:i])
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return ".".join(parts[:i])
    return None


def _path_of(module: str) -> Path:
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"


def _project_imports(path: Path, module: str) -> set[str]:
    """The project modules ``path`` imports, at the top or inside functions (not under
    ``if TYPE_CHECKING:``, which never runs)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for t in ast.walk(tree) if _type_checking(t) for s in t.body
            for n in ast.walk(s)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] in ("sim", "agents") and (mod := _module_of(n)):
                found.add(mod)
    return found - {module}


def test_layer_table_lists_every_module_once():
    listed = set(_layers())
    on_disk = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for d in ("sim", "agents") for p in (REPO / d).rglob("*.py")}
    assert listed == on_disk


def test_imports_point_down_the_layers():
    layer = _layers()
    upward = []
    for mod, lay in layer.items():
        path = _path_of(mod)
        upward += [f"{mod} (layer {lay}) -> {target} (layer {layer[target]})"
                   for target in sorted(_project_imports(path, mod)) if layer[target] > lay]
    assert upward == []
