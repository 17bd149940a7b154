"""A fast start: --help, --version, every command's --help, `zoo list` and shell completion import no torch.

Each runs in a fresh interpreter with its own cache folder; after the first command has written the registry's
catalog, none of them may load torch (timings are measured in benchmarks/cli_start.py, not asserted here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli.main import app

REPO = Path(__file__).resolve().parent.parent
# Runs the CLI in-process, then says on stderr's last line which heavy modules it had imported.
PROBE = """
import json, sys
from zoo.cli.main import main
sys.argv[0] = "zoo"
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\n" + json.dumps({m: m in sys.modules for m in ("torch", "numpy", "torchvision", "onnxruntime")}))
"""
COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)


def probe(args: list[str], env: dict[str, str]) -> tuple[str, dict[str, bool]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    *_, modules = result.stderr.strip().splitlines()
    return result.stdout, json.loads(modules)


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory) -> dict[str, str]:
    """A cache folder of its own, warmed by one `zoo list` (which writes the catalog, importing torch once)."""
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "ZOO_WEIGHTS_DIR": str(REPO / "weights")}
    env.pop("ZOO_MODEL_MODULES", None)
    first = subprocess.run([sys.executable, "-m", "zoo.cli.main", "list"], env=env, capture_output=True, text=True,
                           timeout=300, check=True)
    assert "mnist-mlp" in first.stdout
    assert list((cache / "zoo").glob("catalog-*.json")), "the first listing writes the catalog"
    return env


def test_every_command_is_probed():
    assert {"list", "info", "train", "predict", "evaluate", "export", "serve", "card", "compare"} <= set(COMMANDS)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["list"], ["list", "--json"], ["info", "lenet"],
                                  *([command, "--help"] for command in COMMANDS)], ids=" ".join)
def test_the_command_line_answers_without_importing_torch(fresh_env, args):
    output, modules = probe(args, fresh_env)
    assert output.strip(), "the command printed its answer"
    assert modules["torch"] is False and modules["torchvision"] is False and modules["onnxruntime"] is False, modules
    if args[0] != "list":
        assert modules["numpy"] is False, modules


def test_list_without_torch_shows_what_the_registry_imported(fresh_env):
    """The cached catalog says what importing every model says: names, recipes, parameter counts, versions."""
    output, modules = probe(["list", "--json"], fresh_env)
    rows = {row["name"]: row for row in json.loads(output)}
    import zoo

    assert list(rows) == zoo.list_models()
    for name, row in rows.items():
        assert {k: v for k, v in row.items() if k not in ("weights_dir", "versions")} == zoo.model_catalog()[name]
    assert rows["mnist-mlp"]["parameters"] == 199_210 and [v["version"] for v in rows["mnist-mlp"]["versions"]] == [1]


def test_a_changed_model_file_rebuilds_the_catalog(tmp_path, fresh_env):
    """A plugin named in $ZOO_MODEL_MODULES joins the listing, and an edit to it shows at once."""
    source = (REPO / "zoo" / "models" / "mnist_mlp.py").read_text()
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(source.replace('name="mnist-mlp"', 'name="my-mlp"').replace("def mnist_mlp()", "def my_mlp()"))
    env = {**fresh_env, "PYTHONPATH": str(tmp_path), "ZOO_MODEL_MODULES": "my_plugin"}
    output, _ = probe(["list", "--json"], env)
    assert "my-mlp" in {row["name"] for row in json.loads(output)}
    plugin.write_text(plugin.read_text().replace('summary="MLP', 'summary="Edited MLP'))
    os.utime(plugin, ns=(plugin.stat().st_atime_ns, plugin.stat().st_mtime_ns + 10**9))
    output, _ = probe(["list", "--json"], env)
    assert {row["name"]: row["summary"] for row in json.loads(output)}["my-mlp"].startswith("Edited MLP")
    output, modules = probe(["list", "--json"], env)
    assert modules["torch"] is False and "my-mlp" in output


def complete(words: str, env: dict[str, str], shell: str = "bash") -> tuple[list[str], dict[str, bool]]:
    """What the shell would offer after `words` (the word being completed last, "" for a new one). bash splits
    words at a colon as well, `:` becoming a word of its own (as its COMP_WORDBREAKS says), and keeps the part
    of a reference up to its colon on the line, so it is offered only the rest."""
    parts = words.split(" ")
    if shell == "bash":
        parts = [piece for part in parts for piece in re.split(r"(:)", part) if piece or part == ""]
    env = {**env, "_ZOO_COMPLETE": f"complete_{shell}", "COMP_WORDS": "\n".join(parts),
           "COMP_CWORD": str(len(parts) - 1), "_TYPER_COMPLETE_ARGS": words}
    output, modules = probe([], env)
    if shell == "zsh":  # zsh gets an _arguments call listing the quoted values, with ':' escaped
        return [value.replace("\\\\:", ":") for value in re.findall(r'"([^"]*)"', output)], modules
    return [line for line in output.splitlines() if line.strip()], modules


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_offers_models_recipes_versions_formats_and_backends(fresh_env, shell):
    offered, modules = complete("zoo train mn", fresh_env, shell)
    assert "mnist-mlp" in offered and "lenet" not in offered
    assert modules["torch"] is False, modules
    assert complete("zoo train mnist-mlp --recipe ", fresh_env, shell)[0] == ["document", "default"]
    versions, modules = complete("zoo evaluate mnist-mlp:", fresh_env, shell)
    offered_after_colon = ["1", "latest"] if shell == "bash" else ["mnist-mlp:1", "mnist-mlp:latest"]
    assert versions == offered_after_colon and modules["torch"] is False
    assert complete("zoo evaluate mnist-mlp:la", fresh_env, shell)[0] == offered_after_colon[1:]
    assert set(complete("zoo export lenet:1 --format ", fresh_env, shell)[0]) >= {"onnx", "torchscript", "pt2", "all"}
    backends, modules = complete("zoo predict mnist-mlp:1 x.png --backend ", fresh_env, shell)
    assert set(backends) >= {"auto", "torch", "onnx"} and modules["torch"] is False
    assert {"onnx", "pt2"} <= set(complete("zoo evaluate lenet --backend ", fresh_env, shell)[0])


def test_completion_can_be_installed():
    # Typer's own switch: the shell is named on the command line instead of detected from the process tree.
    result = subprocess.run([str(Path(sys.executable).with_name("zoo")), "--show-completion", "bash"],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert result.returncode == 0 and "_ZOO_COMPLETE=complete_bash" in result.stdout


@pytest.mark.slow
def test_a_reference_completes_across_the_colon_in_a_real_bash(fresh_env, tmp_path):
    """Typed into an interactive bash with zoo's completion installed, `mnist-mlp:la<TAB>` becomes
    `mnist-mlp:latest` (bash splits the word at the colon; Typer's own script then offered nothing)."""
    import pty
    import select
    import signal
    import time

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    zoo_dir = str(Path(sys.executable).parent)
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive bash without the user's rc files
        os.execve(bash, [bash, "--norc", "--noprofile", "-i"],
                  {**fresh_env, "PS1": "$ ", "TERM": "dumb", "PATH": f"{zoo_dir}{os.pathsep}{fresh_env['PATH']}",
                   "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})

    def read_until(marker: str, seconds: float = 60) -> str:
        seen, deadline = "", time.monotonic() + seconds
        while marker not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen += os.read(fd, 65536).decode(errors="replace")
                except OSError:  # the shell has gone: its output ends here
                    break
        return seen

    try:
        # The quotes keep the marker out of the typed line's echo: only the command's output matches.
        os.write(fd, b'eval "$(zoo --show-completion bash)"; echo RE""ADY\n')
        assert "READY" in read_until("READY\r\n$ ")
        # Tab completes the line; Ctrl-A and `echo ` then print the line as completed.
        os.write(fd, b'zoo evaluate mnist-mlp:la\t\x01echo \necho DO""NE\n')
        echoed = read_until("DONE\r\n")
        assert re.search(r"\r\nzoo evaluate mnist-mlp:latest *\r\n", echoed), echoed
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
