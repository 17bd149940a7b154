#!/usr/bin/env bash
# Mutation score (cosmic-ray) of the code that guards users' data and parses untrusted input, one module at a time,
# each against the fast tests that cover it. Not part of CI: it runs the tests once per mutant (hours on 2 cores).
#
#   bash benchmarks/mutation.sh                 # every module in MODULES below
#   bash benchmarks/mutation.sh store forms     # some of them
#
# cosmic-ray mutates files in place, so it works on a copy of the working tree in $MUTATION_DIR (default
# /tmp/zoo-mutation), installed editable into a venv of its own that borrows the dependencies of this checkout's
# .venv (pip install cosmic-ray there first). The session fixtures that train and export (tests/conftest.py,
# tests/serving.py) are built once into $MUTATION_DIR/fixtures ($ZOO_TEST_CACHE) and copied for each mutant.
# Results: $MUTATION_DIR/NAME.sqlite, and `cr-report` of each in $MUTATION_DIR/NAME.txt; the table is in
# benchmarks/MUTATION.md. benchmarks/mutation_survivors.py runs a session's survivors again against newer tests.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${MUTATION_DIR:-/tmp/zoo-mutation}"
TREE="$WORK/tree"
BIN="$REPO/.venv/bin"

# NAME = "module file|test files|-k expression" (fast tests only; -x: the first failure kills the mutant).
declare -A MODULES=(
    [store]="zoo/store/versions.py|tests/test_store.py|"
    [manifest]="zoo/store/manifest.py|tests/test_store.py tests/test_trust.py tests/test_errors.py|test_store.py or plain_file or symlink or the_card_never or hand_edited and (command0 or command3)"
    [v2_codec]="serve/v2_codec.py|tests/test_readers.py|"
    [forms]="serve/forms.py|tests/test_readers.py|"
    [checks]="serve/checks.py|tests/test_readers.py|"
    [imaging]="zoo/inputs/imaging.py|tests/test_imaging.py|"
    [exporter]="zoo/exports/exporter.py|tests/test_verification.py|"
)
ORDER=(store manifest v2_codec forms checks imaging exporter)
[ "$#" -gt 0 ] && ORDER=("$@")

# A copy of the working tree (tracked and untracked files git does not ignore), fresh each run.
rm -rf "$TREE"
mkdir -p "$TREE" "$WORK/fixtures"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$TREE")
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv --without-pip "$WORK/venv"  # pip and setuptools are the checkout's, not an older bundled pair
    site="$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # The checkout's dependencies, without its .pth files (its editable zoo among them): a path a .pth file adds is
    # not scanned for .pth files, so every site-packages folder the checkout's python sees is listed (a worktree's
    # venv that borrows another's through a .pth of its own included).
    "$BIN/python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("site-packages")))' \
        > "$site/_zoo_dependencies.pth"
fi
"$BIN/python" -m pip --python "$WORK/venv/bin/python" install -q --no-deps --no-build-isolation -e "$TREE"

export ZOO_DATA_DIR="${ZOO_DATA_DIR:-$(cd "$REPO/.." && pwd)/shared/data}" ZOO_TEST_CACHE="$WORK/fixtures"

# Each mutant's pytest is a fork of a server that imported torch and the other libraries once
# (benchmarks/mutation_forkserver.py; MUTATION_FORK=0: a fresh process per mutant, as cosmic-ray does by itself).
SOCKET="$WORK/forkserver.sock"
RUNNER="$WORK/venv/bin/python -m pytest"
if [ "${MUTATION_FORK:-1}" != 0 ]; then
    "$WORK/venv/bin/python" "$REPO/benchmarks/mutation_forkserver.py" serve "$SOCKET" > "$WORK/forkserver.log" 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    until [ -S "$SOCKET" ] || ! kill -0 "$server" 2>/dev/null; do sleep 0.5; done
    RUNNER="$WORK/venv/bin/python $REPO/benchmarks/mutation_forkserver.py run $SOCKET"
fi
for name in "${ORDER[@]}"; do
    IFS="|" read -r module tests expression <<< "${MODULES[$name]}"
    select="${expression:+ -k '$expression'}"
    config="$WORK/$name.toml"
    cat > "$config" <<EOF
[cosmic-ray]
module-path = "$module"
timeout = 300.0
excluded-modules = []
test-command = "$RUNNER -x -q -p no:randomly -p no:cacheprovider -m 'not slow' $tests$select"

[cosmic-ray.distributor]
name = "local"

# Operators that only repeat what one replacement of the same operator already tells (a + b made a ** b,
# a << b, a | b...) or only make a TypeError (x == y made x is y, -x made ~x): kept are one arithmetic replacement per
# operator, each comparison made its negation and its neighbours (< made <=, >=, >), and every other operator.
[cosmic-ray.filters.operators-filter]
exclude-operators = [
    "core/ReplaceBinaryOperator_.*_(Pow|RShift|LShift|BitOr|BitAnd|BitXor|FloorDiv|Mod)",
    "core/ReplaceBinaryOperator_(Pow|RShift|LShift|BitOr|BitAnd|BitXor|FloorDiv|Mod)_.*",
    "core/ReplaceBinaryOperator_(Add_Mul|Add_Div|Sub_Mul|Sub_Div|Mul_Add|Mul_Sub|Div_Add|Div_Sub)",
    "core/ReplaceAugmentedBinaryOperator_.*",
    "core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot)$",
    "core/ReplaceComparisonOperator_(Is|IsNot)_(Eq|NotEq|Lt|LtE|Gt|GtE)$",
    "core/ReplaceComparisonOperator_(Eq|NotEq)_(Lt|LtE|Gt|GtE)$",
    "core/ReplaceUnaryOperator_.*_(Invert|UAdd)$",
    "core/ReplaceUnaryOperator_(Invert|UAdd)_.*",
    "core/ReplaceUnaryOperator_USub_Not$",
]
EOF
    started=$(date +%s)
    (
        cd "$TREE"
        "$BIN/cosmic-ray" init "$config" "$WORK/$name.sqlite" --force
        "$BIN/cr-filter-operators" "$WORK/$name.sqlite" "$config"
        "$BIN/cosmic-ray" baseline "$config"
        "$BIN/cosmic-ray" exec "$config" "$WORK/$name.sqlite"
        git -C "$REPO" diff --quiet -- "$module" || true
    )
    "$BIN/cr-report" --show-pending "$WORK/$name.sqlite" > "$WORK/$name.txt"
    echo "$name ($module): $(tail -3 "$WORK/$name.txt" | tr '\n' ' ') in $(( $(date +%s) - started )) s"
done
