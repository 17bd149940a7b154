"""mypy over zoo/, cli/ and serve/ as one package, `zoo`, the way the wheel installs them.

setuptools' package-dir puts cli/ at zoo.cli and serve/ at zoo.serve; mypy finds modules by folder and cannot follow
that mapping (nor the editable install's import hook), so this lays the package out in .mypy_tree/ as links to the
real files (the same layout every run, so mypy's cache stays warm) and checks `-p zoo` there, with the settings of
[tool.mypy] in pyproject.toml. Errors are reported against the files in this checkout. Exit status: mypy's.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mypy import api

REPO = Path(__file__).resolve().parent.parent
TREE = REPO / ".mypy_tree"
# Keep in step with [tool.setuptools.package-dir] (tests/test_layout.py checks the two agree).
PACKAGE_DIR = {"zoo.cli": "cli", "zoo.serve": "serve"}


def lay_out() -> Path:
    """TREE/zoo: a link to every entry of zoo/, and zoo/cli, zoo/serve linked to the folders they install from."""
    package = TREE / "zoo"
    shutil.rmtree(TREE, ignore_errors=True)
    package.mkdir(parents=True)
    for entry in (REPO / "zoo").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in PACKAGE_DIR.items():
        (package / name.split(".", 1)[1]).symlink_to(REPO / folder)
    return package


def main() -> int:
    os.chdir(REPO)
    lay_out()
    os.environ["MYPYPATH"] = str(TREE)
    out, err, status = api.run(["--config-file", str(REPO / "pyproject.toml"), "-p", "zoo", *sys.argv[1:]])
    prefix = f"{TREE.relative_to(REPO)}/zoo/"
    for line in out.splitlines():
        for name, folder in PACKAGE_DIR.items():
            line = line.replace(f"{prefix}{name.split('.', 1)[1]}/", f"{folder}/")
        print(line.replace(prefix, "zoo/"))
    print(err, end="", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
