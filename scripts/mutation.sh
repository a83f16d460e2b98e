#!/usr/bin/env bash
# Mutation testing (issue #8), outside CI: mutmut plants small bugs, one at a time, in the
# critical modules and runs a fast subset of the tests against each; a mutant the tests
# do not fail "survives". Everything happens in a scratch copy of the repository, never in
# the working tree. The score and the survivors that matter are in TESTING.md.
#
#   bash scripts/mutation.sh                 every module below (tens of minutes on 2 cores)
#   bash scripts/mutation.sh pooling store   some of them
#
# Environment: MUTATION_DIR (scratch folder, default /tmp/lookalike-mutation, recreated),
# MUTATION_CHILDREN (mutants run in parallel, default: the number of cores),
# MUTATION_TIMEOUT (seconds per module, default 1800: the run stops, results so far count).
# Needs mutmut (pip install mutmut; in the dev extra). Tests that start a subprocess run the
# unmutated package, so the subsets below are in-process tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv/bin"
SCRATCH=${MUTATION_DIR:-/tmp/lookalike-mutation}
CHILDREN=${MUTATION_CHILDREN:-$(nproc)}
TIMEOUT=${MUTATION_TIMEOUT:-1800}

# module -> "file to mutate|pytest arguments of the fast subset that guards it"
declare -A MODULES=(
    [pooling]="src/lookalike/embed/pooling.py|tests/test_embed.py -k pool or flatten"
    [store]="src/lookalike/store/sqlite.py|tests/test_store.py tests/test_index.py -k not import_torch"
    [pipeline]="src/lookalike/pipeline.py|tests/test_index.py tests/test_index_promises.py -k not ann and not exact and not import_torch"
    [index]="src/lookalike/index/*|tests/test_index.py tests/test_index_promises.py -k not import_torch"
    [vectors]="src/lookalike/vectors/*|tests/test_vectors.py tests/test_vectors_ann.py"
)
ORDER=(pooling store pipeline index vectors)
[ $# -gt 0 ] && ORDER=("$@")

"$VENV/mutmut" --version >/dev/null || {
    echo "mutmut is missing: $VENV/pip install mutmut" >&2
    exit 1
}

for name in "${ORDER[@]}"; do
    spec=${MODULES[$name]:-}
    [ -n "$spec" ] || { echo "unknown module $name (${!MODULES[*]})" >&2; exit 2; }
    file=${spec%%|*}
    read -r -a tests <<<"${spec#*|}"
    work="$SCRATCH/$name"
    rm -rf "$work"
    mkdir -p "$work"
    # The tracked and untracked (not ignored) files, without .git, .venv or old mutants.
    (cd "$ROOT" && git ls-files -co --exclude-standard -z) |
        (cd "$ROOT" && xargs -0 cp --parents -t "$work" 2>/dev/null || true)
    # pytest arguments of the subset as a TOML list (one element per word; a -k expression
    # is kept whole).
    args=$("$VENV/python" - "${tests[@]}" <<'EOF'
import json, sys
words, out, i = sys.argv[1:], [], 0
while i < len(words):
    if words[i] == "-k":
        out += ["-k", " ".join(words[i + 1:])]
        break
    out.append(words[i])
    i += 1
print(json.dumps(out))
EOF
)
    cat >>"$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["$file"]
pytest_add_cli_args_test_selection = $args
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]
# torch is not fork-safe once its thread pools run: fork workers from a clean server.
process_isolation = "forkserver"
EOF
    echo "== $name: $file against ${tests[*]}"
    (cd "$work" && timeout "$TIMEOUT" nice "$VENV/mutmut" run --max-children "$CHILDREN") ||
        echo "   (stopped after ${TIMEOUT}s or failed: the results so far are below)"
    (cd "$work" && "$VENV/mutmut" export-cicd-stats >/dev/null 2>&1 || true)
    if [ -f "$work/mutants/mutmut-cicd-stats.json" ]; then
        "$VENV/python" - "$work/mutants/mutmut-cicd-stats.json" "$name" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
tested = s["killed"] + s["survived"] + s["timeout"] + s["suspicious"] + s["segfault"]
score = (s["killed"] + s["timeout"] + s["segfault"]) / tested if tested else 0.0
print(f"   {sys.argv[2]}: {s['total']} mutants: {s['killed']} killed, {s['survived']} survived, "
      f"{s['timeout']} timeouts, {s['no_tests']} without tests, "
      f"{s['total'] - tested - s['no_tests']} not run; score {score:.0%} of those run")
EOF
    fi
    echo "   survivors: (cd $work && $VENV/mutmut results; $VENV/mutmut show NAME)"
done
