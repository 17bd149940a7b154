"""The architecture holds: model files are discovered, imports flow one way, behaviour is driven by the spec."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import zoo

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "cli", "serve")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every zoo module `path` imports, at the top or inside a function (`from zoo import x` counts zoo.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "zoo"}


def test_no_import_cycle_inside_zoo():
    files = {module_name(p): p for p in (REPO / "zoo").rglob("*.py")}
    # The package's __init__ re-exports everything, so every `from zoo.x import` passes through it; it is the top.
    graph = {name: {dep for dep in imports_of(path) if dep in files and dep != "zoo"} for name, path in files.items()}
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
