"""The architecture holds: model files are discovered, imports flow one way, behaviour is driven by the spec."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "cli", "serve")
# zoo's subsystems, lowest first: each may import its own layer and those below, never one above. The flat modules
# and the model files sit on top; zoo/__init__.py (lazy exports of them all) is above everything.
LAYERS = ("core", "inputs", "store", "training", "exports", "cards", "publishing", "catalog", "hub", "prediction",
          "models")
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_only_imports(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under `if TYPE_CHECKING:`, which name types for annotations and run never."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            found.update(id(child) for statement in node.body for child in ast.walk(statement))
    return found


def imports_of(path: Path, with_type_only: bool = True) -> set[str]:
    """Every zoo module `path` imports, at the top or inside a function (`from zoo import x` counts zoo.x);
    without `with_type_only`, the imports that only annotations use are left out."""
    found = set()
    tree = ast.parse(path.read_text())
    skipped = set() if with_type_only else type_only_imports(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "zoo"}


def test_no_import_cycle_inside_zoo():
    files = {module_name(p): p for p in (REPO / "zoo").rglob("*.py")}
    # The package's __init__ re-exports everything, so every `from zoo.x import` passes through it; it is the top.
    # A type named for annotations alone (under TYPE_CHECKING) is imported by the type checker, never at run time.
    graph = {name: {dep for dep in imports_of(path, with_type_only=False) if dep in files and dep != "zoo"}
             for name, path in files.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def layer_of(module: str) -> int:
    """The index in LAYERS of a module of zoo/ (zoo.core.spec -> core's, zoo.hub -> hub's)."""
    return LAYERS.index(module.split(".")[1])


def test_every_subsystem_has_its_place_in_the_layer_order():
    top = {path.stem if path.is_file() else path.name for path in (REPO / "zoo").iterdir()
           if path.name != "__init__.py" and (path.suffix == ".py" or (path / "__init__.py").is_file())}
    assert top == set(LAYERS), f"zoo/ holds {sorted(top)}; LAYERS must name each package and flat module"
    for package in (REPO / "zoo").iterdir():
        if (package / "__init__.py").is_file():
            doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
            assert doc and doc.splitlines()[0].endswith("."), f"{package.name}/__init__.py must say its job in a line"


def test_no_package_imports_one_above_it():
    """The layers run one way (annotations aside: a type named under TYPE_CHECKING is no dependency at run time)."""
    upward = []
    for path in (REPO / "zoo").rglob("*.py"):
        name = module_name(path)
        if name == "zoo":
            continue
        for dep in imports_of(path, with_type_only=False):
            parts = dep.split(".")
            if len(parts) > 1 and parts[1] in ("cli", "serve"):
                upward.append(f"{name} imports {dep}: zoo knows nothing of the CLI or the server")
            elif len(parts) > 1 and parts[1] in LAYERS and layer_of(dep) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)]}) imports {dep} ({LAYERS[layer_of(dep)]})")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_function_in_zoo_is_over_60_lines():
    long = []
    for path in (REPO / "zoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(sorted(long))


def test_the_server_never_imports_the_command_line():
    for path in (REPO / "serve").rglob("*.py"):
        assert not any(dep.startswith("zoo.cli") for dep in imports_of(path)), path


def test_no_module_compares_a_task_or_data_set_label_with_a_string():
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare):
                    sides = [node.left, *node.comparators]
                    labels = [s for s in sides if isinstance(s, ast.Attribute) and s.attr in ("task", "dataset")]
                    strings = [s for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
                    assert not (labels and strings), f"{path}:{node.lineno} compares a label with a string"


def test_format_names_are_spelled_in_the_format_table_alone():
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name == "formats.py":
                continue
            literals = {node.value for node in ast.walk(ast.parse(path.read_text()))
                        if isinstance(node, ast.Constant) and isinstance(node.value, str)}
            assert not literals & {"torchscript", "pt2", "model.onnx", "model.pt", "model.pt2"}, path


def test_a_new_file_under_zoo_models_is_a_new_model(tmp_path):
    """Copy mnist_mlp.py, rename the model, and it is listed: no other file changes."""
    shutil.copytree(REPO / "zoo", tmp_path / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    source = (REPO / "zoo" / "models" / "mnist_mlp.py").read_text()
    (tmp_path / "zoo" / "models" / "my_mlp.py").write_text(
        source.replace('name="mnist-mlp"', 'name="my-mlp"').replace("def mnist_mlp()", "def my_mlp()"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = "import zoo; s = zoo.get_model('my-mlp'); print(zoo.list_models(), s.interface.form.value, s.exportable)"
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "'my-mlp'" in result.stdout and "'mnist-mlp'" in result.stdout and "digits True" in result.stdout


def test_every_exportable_model_declares_its_interface():
    for name in zoo.list_models():
        spec = zoo.get_model(name)
        assert spec.exportable == (spec.interface is not None)
        if spec.exportable:
            assert spec.input.shape[0] == "N" and spec.output.shape[0] == "N"
            assert isinstance(spec.interface.form, zoo.InputForm)


def test_the_wheel_and_the_type_check_see_every_package():
    """pyproject's package list names every package under zoo/, and tests/typecheck.py maps cli/ and serve/ as
    setuptools does, so neither the wheel nor mypy misses a subsystem."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {module_name(path.parent) for path in (REPO / "zoo").rglob("__init__.py")}
    assert packages <= set(setuptools["packages"]), sorted(packages - set(setuptools["packages"]))
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import typecheck
    finally:
        sys.path.pop(0)
    assert typecheck.PACKAGE_DIR == {name: folder for name, folder in setuptools["package-dir"].items()
                                     if name != "zoo.weights"}
