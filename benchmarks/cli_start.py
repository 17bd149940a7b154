"""How fast the command line answers: --help, --version, each CMD --help, completion and `zoo list`, in fresh
processes, against a bare `python -c "import torch"` timed in the same run (the floor every command paid before).

Medians of --runs fresh processes each, after one warm-up run that also writes the registry's catalog. Prints a
Markdown table; `--json` prints the raw medians. `--before COMMIT` also times that commit's tree, laid out as the
wheel installs it, in the same run and through the same launcher as the working tree (`python -c` running
zoo.cli.main.main from the copy), so before and after differ only in the code.

    python benchmarks/cli_start.py [--runs 9] [--before 721a465]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ZOO = str(Path(sys.executable).with_name("zoo"))
REPO = Path(__file__).resolve().parent.parent
RELEASED = str(REPO / "weights")
# Runs a copy of the zoo laid out as an installed package (the wheel's mapping of cli/, serve/, weights/).
LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'zoo'; from zoo.cli.main import main; main()"
LAYOUT = {"zoo": "zoo", "cli": "zoo/cli", "serve": "zoo/serve", "weights": "zoo/weights"}
COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "python -c 'import torch'": ([sys.executable, "-c", "import torch"], {}),
    "python -c 'pass'": ([sys.executable, "-c", "pass"], {}),
    "zoo --help": ([ZOO, "--help"], {}),
    "zoo --version": ([ZOO, "--version"], {}),
    "zoo train --help": ([ZOO, "train", "--help"], {}),
    "zoo predict --help": ([ZOO, "predict", "--help"], {}),
    "zoo serve --help": ([ZOO, "serve", "--help"], {}),
    "zoo list": ([ZOO, "list"], {}),
    "zoo info lenet": ([ZOO, "info", "lenet"], {}),
    "complete `zoo train mn<TAB>`": ([ZOO], {"_ZOO_COMPLETE": "complete_bash", "COMP_WORDS": "zoo train mn",
                                              "COMP_CWORD": "2"}),
    "complete `zoo evaluate mnist-mlp:<TAB>`": ([ZOO], {"_ZOO_COMPLETE": "complete_bash",
                                                         "COMP_WORDS": "zoo evaluate mnist-mlp:", "COMP_CWORD": "2"}),
}


def median_seconds(args: list[str], env: dict[str, str], runs: int) -> float:
    environment = {**os.environ, "ZOO_WEIGHTS_DIR": RELEASED, **env}
    subprocess.run(args, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def lay_out(files: dict[str, bytes], root: Path) -> None:
    """Write a tree of files (path -> bytes) where the wheel would put them."""
    for path, data in files.items():
        top, _, rest = path.partition("/")
        if top in LAYOUT and rest:
            target = root / LAYOUT[top] / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def commit_files(commit: str) -> dict[str, bytes]:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def working_files() -> dict[str, bytes]:
    return {str(p.relative_to(REPO)): p.read_bytes() for top in LAYOUT for p in (REPO / top).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def tree_commands(root: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """COMMANDS's zoo commands, run from the copy at `root`."""
    launch = [sys.executable, "-c", LAUNCH.format(root=str(root))]
    return {label: ([*launch, *args[1:]], env) for label, (args, env) in COMMANDS.items() if args[0] == ZOO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--before", help="a commit to time beside the working tree")
    options = parser.parse_args()
    if not options.before:
        results = {label: median_seconds(args, env, options.runs) for label, (args, env) in COMMANDS.items()}
        if options.json:
            print(json.dumps(results, indent=2))
            return
        torch_import = results["python -c 'import torch'"]
        print(f"| command | median s ({options.runs} fresh processes) | / `import torch` |")
        print("| --- | --- | --- |")
        for label, seconds in results.items():
            print(f"| {label} | {seconds:.3f} | {seconds / torch_import:.2f} |")
        return
    temp = Path(tempfile.mkdtemp())
    try:
        lay_out(commit_files(options.before), temp / "before")
        lay_out(working_files(), temp / "after")
        torch_import = median_seconds(*COMMANDS["python -c 'import torch'"], options.runs)
        before, after = tree_commands(temp / "before"), tree_commands(temp / "after")
        # Interleaved, so that a machine getting busier or quieter during the run weighs on both alike.
        rows = [(label, median_seconds(*before[label], options.runs), median_seconds(*after[label], options.runs))
                for label in before]
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    if options.json:
        print(json.dumps({"import torch": torch_import, "commands": rows}, indent=2))
        return
    print(f"`python -c 'import torch'`: {torch_import:.3f} s (median of {options.runs} fresh processes)\n")
    print(f"| command | {options.before} s | / import torch | working tree s | / import torch |")
    print("| --- | --- | --- | --- | --- |")
    for label, old, new in rows:
        print(f"| {label} | {old:.3f} | {old / torch_import:.2f} | {new:.3f} | {new / torch_import:.2f} |")


if __name__ == "__main__":
    main()
