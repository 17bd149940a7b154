"""Run the surviving mutants of a cosmic-ray session again, against the tests as they are now.

    python benchmarks/mutation_survivors.py SESSION.sqlite MODULE -- PYTEST ARGS...

Each survivor's diff (as cosmic-ray recorded it) is applied to MODULE in a copy of the working tree (the copy
benchmarks/mutation.sh made, $MUTATION_DIR/tree, refreshed from the checkout first), the tests run, and the module is
restored. MODULE may be the module's path today when it moved since the session (the diff's context lines find
the place). Prints one line per survivor: killed or survived, the line and the operator.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    session, module, *rest = argv
    pytest_args = rest[1:] if rest[:1] == ["--"] else rest
    tree = Path(os.environ.get("MUTATION_DIR", "/tmp/zoo-mutation")) / "tree"
    python = Path(os.environ.get("MUTATION_DIR", "/tmp/zoo-mutation")) / "venv" / "bin" / "python"
    rows = sqlite3.connect(session).execute(
        "select m.start_pos_row, m.operator_name, r.diff from mutation_specs m join work_results r "
        "on m.job_id = r.job_id where r.test_outcome = 'SURVIVED' order by m.start_pos_row"
    ).fetchall()
    target = tree / module
    original = target.read_text()
    killed = 0
    for row, operator, diff in rows:
        body = "".join(line + "\n" for line in diff.splitlines() if not line.startswith(("---", "+++")))
        with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False) as patch_file:
            patch_file.write(f"--- a/{module}\n+++ b/{module}\n{body}")
        try:
            applied = subprocess.run(["patch", "-p1", "-F3", "-i", patch_file.name], cwd=tree, capture_output=True,
                                     text=True, check=False)
            if applied.returncode != 0:
                print(f"line {row} {operator}: the diff no longer applies ({applied.stdout.strip()[:120]})")
                continue
            done = subprocess.run([str(python), "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p",
                                   "no:cacheprovider", *pytest_args], cwd=tree, capture_output=True, text=True,
                                  timeout=600, check=False)
            outcome = "killed" if done.returncode != 0 else "survived"
            killed += outcome == "killed"
            print(f"line {row} {operator}: {outcome}", flush=True)
        finally:
            target.write_text(original)
            os.unlink(patch_file.name)
    print(f"{killed} of {len(rows)} survivors killed by the tests as they are now")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
