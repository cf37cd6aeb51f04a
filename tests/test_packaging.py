"""What the wheel promises: every imported package declared, imports pointing one way, profiles and
corpus shipped as package data, clients registering their own commands. Fast (no build); the built
wheel in a fresh venv is tests/test_wheel.py."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("rag", "ui", "eval")  # the repository's folders of installed code
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
INSTALLED = {"rag": "rag", **PYPROJECT["tool"]["setuptools"]["package-dir"]}  # import name -> folder
CLIENTS = {"paper_rag_ui", "paper_rag_eval", "ui", "eval", "server", "bench", "tests"}


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of a package imports (at module level or inside functions)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_package_is_declared():
    core = {_requirement_name(s) for s in PYPROJECT["project"]["dependencies"]}
    extras = {_requirement_name(s) for specs in PYPROJECT["project"]["optional-dependencies"].values() for s in specs}
    distributions = packages_distributions()
    undeclared = {}
    for package in PACKAGES:
        for path, names in _imports(package).items():
            for name in names - set(sys.stdlib_module_names) - set(INSTALLED) - {"__future__"}:
                dists = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
                if not dists & (core | extras):
                    undeclared.setdefault(name, []).append(path)
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


def _full_imports(path: Path) -> set[str]:
    """Dotted module names a file imports (absolute imports), at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_library_imports_none_of_its_clients():
    """rag/ imports no client; rag/server (the HTTP client of rag.service, installed inside the library) is
    imported by nothing else in rag/ and imports one client only: the chat page it mounts at `/`."""
    offenders, server_users = {}, []
    for path in (REPO / "rag").rglob("*.py"):
        relative = path.relative_to(REPO)
        names = _full_imports(path)
        in_server = relative.parts[:2] == ("rag", "server")
        clients = {n.split(".")[0] for n in names} & (CLIENTS - ({"paper_rag_ui"} if in_server else set()))
        if clients:
            offenders[str(relative)] = sorted(clients)
        if not in_server and any(n == "rag.server" or n.startswith("rag.server.") for n in names):
            server_users.append(str(relative))
    assert offenders == {} and server_users == []


def test_installed_names_are_project_specific():
    """The wheel installs `rag`, `paper_rag_ui` and `paper_rag_eval`: no generic top-level `ui`, `eval` or
    `server` that could collide with another project; every folder of code is listed, and nothing in the
    repository imports the folders by their bare names."""
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert {name.split(".")[0] for name in packages} == {"rag", "paper_rag_ui", "paper_rag_eval"}
    assert INSTALLED == {"rag": "rag", "paper_rag_ui": "ui", "paper_rag_eval": "eval"}
    assert not (REPO / "server").exists() and (REPO / "rag" / "server" / "app.py").is_file()
    folders = set()
    for name, folder in INSTALLED.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.parent.relative_to(REPO / folder).parts
            folders.add(".".join((name, *parts)))
    # and the folders that hold only data files, listed with their own package-data (else setuptools warns that
    # it would ignore them)
    data = set(PYPROJECT["tool"]["setuptools"]["package-data"]) - folders
    assert data == {"rag.configs", "rag.data.seeds", "paper_rag_eval.golden", "paper_rag_eval.collections"}
    assert folders | data == packages, f"pyproject's packages must list every folder of code and data: {folders}"
    bare = {
        str(path.relative_to(REPO)): sorted(found)
        for folder in (*PACKAGES, "tests", "bench")
        for path in (REPO / folder).rglob("*.py")
        if (found := {n.split(".")[0] for n in _full_imports(path)} & {"ui", "eval", "server"})
    }
    assert bare == {}


def test_profiles_and_corpus_are_package_data_and_clients_register_commands():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["rag.configs"] and "*.txt" in data["rag.data.seeds"]
    assert "*.jsonl" in data["paper_rag_eval.golden"] and "judge_weights.json" in data["rag.answer"]
    assert (REPO / "rag" / "configs" / "default.yaml").is_file()
    # the top-level configs/ is the same folder (a link), so the repository and the wheel cannot drift apart
    assert (REPO / "configs").resolve() == (REPO / "rag" / "configs").resolve()
    commands = PYPROJECT["project"]["entry-points"]["paper_rag.commands"]
    assert set(commands) == {"eval", "serve", "ui"}
    for target in commands.values():
        top, *rest = target.split(":")[0].split(".")
        assert (REPO / INSTALLED[top] / Path(*rest)).with_suffix(".py").is_file(), target


def test_python_dash_m_rag_and_the_typed_marker():
    """`python -m rag` is the `rag` command; `rag/py.typed` ships so type checkers read the hints."""
    import subprocess

    from rag import __version__

    done = subprocess.run(
        [sys.executable, "-m", "rag", "--version"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == f"rag (paper-rag) {__version__}", done.stderr
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["rag"]
    assert (REPO / "rag" / "py.typed").is_file()


def _rag_import_graph() -> dict[str, set[str]]:
    """Module -> the rag modules it imports: at module level, inside functions and under TYPE_CHECKING alike.
    Importing `rag.a.b` runs `rag/a/__init__.py` too, so the packages on the way count as imported, except
    the importing module's own packages (Python has started those before the module runs)."""
    files = {}
    for path in (REPO / "rag").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def packages(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:n]) for n in range(1, len(parts))}

    def modules_of(name: str) -> set[str]:
        return ({name} | packages(name)) & files.keys()

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found |= modules_of(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                found |= modules_of(base)
                found |= {f"{base}.{alias.name}" for alias in node.names} & files.keys()  # `from pkg import module`
        graph[module] = found - {module} - packages(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_inside_the_library():
    """Imports point one way: what two modules both need lives in a third (rag.records, rag.llm_base,
    rag.model_folder, rag.errors' exit codes, rag.integrations.documents), never in either of them."""
    graph = _rag_import_graph()
    assert {"rag.sources", "rag.readers.pdf", "rag.records"} <= graph.keys()
    assert "rag.records" in graph["rag.readers.pdf"] and "rag.readers" in graph["rag.sources"]  # the walk sees both
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_readme_architecture_matches_the_tree():
    """Every `rag/...` path the README's "Architecture" section names exists, and every module of rag/ is named
    (by its path, or by its file name inside its package's entry)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Architecture\n") : readme.index("\n## ", readme.index("## Architecture\n") + 1)]
    paths = set(re.findall(r"`(rag/[\w/.]*)`", section))
    assert paths and [p for p in paths if not (REPO / p).exists()] == []
    named = set(re.findall(r"`([\w/]+\.py)`", section))
    modules = {p.relative_to(REPO) for p in (REPO / "rag").rglob("*.py") if p.name != "__init__.py"}
    unnamed = sorted(str(m) for m in modules if str(m) not in named and m.name not in named)
    assert unnamed == [], f"modules the README's Architecture section does not name: {unnamed}"


def test_benches_use_public_apis_only():
    """bench/ reads the library through its public names: no `_private` import from rag and no `obj._attr`
    outside a bench class's own `self` (store internals, Chroma collections and metadata keys stay in rag/)."""
    private = {}
    for path in (REPO / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rag"):
                names = [a.name for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                names = [] if isinstance(node.value, ast.Name) and node.value.id in ("self", "sys") else [node.attr]
            elif isinstance(node, ast.Attribute) and node.attr in ("collection", "sentences"):  # Chroma collections
                names = [node.attr] if node.attr == "collection" or "store" in ast.unparse(node.value) else []
            else:
                continue
            if names:
                private.setdefault(path.name, []).extend(names)
    assert private == {}
