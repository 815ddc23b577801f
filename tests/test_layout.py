"""The layout, checked by walking the imports: they point downward only
(experiments -> lenses -> nets), no package imports itself in a cycle, tqdm and
matplotlib live in the experiment layer only, configs import nothing of ours, and no
module of the experiment layer is over 400 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVEL = {"nets": 0, "minmax": 1, "analytic": 1, "attacks": 1, "som": 1, "experiments": 2}
OURS = set(LEVEL)


def imports(path: Path) -> set[str]:
    """Top-level package names imported by one file (absolute imports)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def package_graph() -> dict[str, set[str]]:
    graph = {p: set() for p in LEVEL}
    for pkg in LEVEL:
        for path in (ROOT / pkg).rglob("*.py"):
            graph[pkg] |= (imports(path) & OURS) - {pkg}
    return graph


def test_imports_point_downward_only():
    for pkg, deps in package_graph().items():
        up = [d for d in deps if LEVEL[d] > LEVEL[pkg]]
        assert not up, f"{pkg} imports the higher package(s) {up}"


def test_no_package_cycles():
    graph = package_graph()

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(d == b or (d not in seen and reaches(d, b, seen | {d})) for d in graph[a])

    cycles = [p for p in graph if reaches(p, p, {p})]
    assert not cycles, f"package cycle through {cycles}: {graph}"


@pytest.mark.parametrize("lib", ["tqdm", "matplotlib"])
def test_progress_bars_and_plots_only_in_the_experiment_layer(lib):
    users = [str(p.relative_to(ROOT)) for pkg in LEVEL if pkg != "experiments"
             for p in (ROOT / pkg).rglob("*.py") if lib in imports(p)]
    assert not users


def test_configs_import_nothing_of_ours():
    for path in (ROOT / "configs").glob("*.py"):
        assert not imports(path) & OURS, path


def test_experiment_modules_are_small_and_packages_have_one_door():
    for path in (ROOT / "experiments").rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path
    for pkg in LEVEL:
        init = ROOT / pkg / "__init__.py"
        assert init.is_file() and "__all__" in init.read_text(), init
