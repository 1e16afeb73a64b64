#!/usr/bin/env bash
# Mutation testing of the modules whose mistakes matter most, each against its own tests,
# with mutmut (https://mutmut.readthedocs.io/). Slow, so not part of CI: run it by hand.
#
#   bash scripts/mutation.sh                       # every module below
#   bash scripts/mutation.sh core/retry.py         # one module (path under mfa_fsm/)
#   MUTATION_REV=HEAD~3 bash scripts/mutation.sh   # measure a committed revision instead
#   MUTATION_FRESH=1 bash scripts/mutation.sh core/flow.py   # fresh interpreter per mutant
#
# Each module runs in its own scratch copy of the project (the working tree's tracked and
# untracked files, or MUTATION_REV), so a run never touches your checkout and several may
# run at once. mutmut forks one pytest per mutant and runs only the tests that reach the
# mutated function. The closing table gives, per module: mutants, killed (a test failed or
# the run timed out), survived, not reached by any test, and the score killed / mutants.
# mutmut mutates code inside functions only: module constants and attrs field defaults are
# pinned by tests (test_policy_defaults.py and friends) but not mutated here. By default each
# mutant's pytest is forked from a process that has already imported the project, so code
# that runs only at import (core/flow.py's states() and said(), Flow.__init_subclass__) or
# fills a module cache on first use (core/snapshot.py's codec builders) runs unmutated and
# its mutants survive whatever the tests do. MUTATION_FRESH=1 imports afresh for every mutant
# (mutmut's fork server without warm-up): slower, but those mutants become testable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
WORK=${MUTATION_DIR:-$(mktemp -d -t mfa-fsm-mutation.XXXXXX)}
mkdir -p "$WORK"

# module (under mfa_fsm/) -> its own tests
declare -A TESTS=(
  [core/flow.py]="tests/core/test_flow.py tests/entrust/test_entrust_flow.py tests/cyberark/test_cyberark_flow.py"
  [core/snapshot.py]="tests/core/test_snapshot.py tests/stores/test_migration.py"
  [core/polling.py]="tests/core/test_polling.py tests/core/test_policy_defaults.py"
  [core/retry.py]="tests/core/test_retry.py tests/core/test_policy_defaults.py"
  [entrust/replies.py]="tests/entrust/test_entrust_replies.py tests/hardening/test_secret_reprs.py"
  [cyberark/replies.py]="tests/cyberark/test_replies.py tests/hardening/test_secret_reprs.py"
  [stores/sealed.py]="tests/stores/test_sealed.py"
  [engine.py]="tests/test_engine.py tests/test_engine_wiring.py tests/core/test_policy_defaults.py"
)
ORDER=(core/retry.py core/polling.py core/snapshot.py stores/sealed.py entrust/replies.py
  cyberark/replies.py core/flow.py engine.py)
if (($#)); then ORDER=("$@"); fi

"$VENV_PY" -c "import mutmut" 2>/dev/null || "$VENV_PY" -m pip install -q "mutmut>=3.8,<4"
MUTMUT="$(dirname "$VENV_PY")/mutmut"

copy_project() { # $1: destination
  mkdir -p "$1"
  if [ -n "${MUTATION_REV:-}" ]; then
    git archive "$MUTATION_REV" | tar -x -C "$1"
  else
    git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$1"
  fi
}

summary="$WORK/summary.txt"
printf '%-22s %7s %7s %8s %9s %7s\n' module mutants killed survived unreached score >"$summary"
for module in "${ORDER[@]}"; do
  tests=${TESTS[$module]:-}
  if [ -z "$tests" ]; then
    echo "mutation: no tests are mapped for $module" >&2
    exit 2
  fi
  dir="$WORK/${module//\//_}"
  rm -rf "$dir"
  copy_project "$dir"
  existing=()
  for t in $tests; do [ -e "$dir/$t" ] && existing+=("\"$t\""); done
  # Older revisions (MUTATION_REV) may lack the suite's "mutation" Hypothesis profile.
  profile=""
  if grep -q 'register_profile' "$dir/tests/conftest.py"; then
    profile=', "--hypothesis-profile=mutation"'
  fi
  cat >>"$dir/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["mfa_fsm"]
only_mutate = ["mfa_fsm/$module"]
pytest_add_cli_args_test_selection = [$(IFS=,; echo "${existing[*]}")]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"$profile]
EOF
  if [ -n "${MUTATION_FRESH:-}" ]; then
    printf 'process_isolation = "forkserver"\nforkserver_warmup = "none"\n' >>"$dir/pyproject.toml"
  fi
  echo "mutation: $module against ${existing[*]}" >&2
  (cd "$dir" && "$MUTMUT" run >run.log 2>&1) || true
  # The progress line ends with the final counts: 🎉 killed 🫥 no tests ⏰ timeout
  # 🤔 suspicious 🙁 survived 🔇 skipped.
  "$VENV_PY" - "$dir/run.log" "$module" >>"$summary" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
last = [line for line in re.split(r"[\r\n]", text) if "🎉" in line]
if not last:
    print(f"{sys.argv[2]:<22} mutmut did not finish; see {sys.argv[1]}")
    sys.exit()
counts = dict(re.findall(r"(🎉|🫥|⏰|🤔|🙁|🔇) (\d+)", last[-1]))
total = int(re.search(r"(\d+)/(\d+)", last[-1]).group(2))
get = lambda k: int(counts.get(k, 0))
killed = get("🎉") + get("⏰")
survived = get("🙁") + get("🤔")
print(f"{sys.argv[2]:<22} {total:>7} {killed:>7} {survived:>8} {get('🫥'):>9} "
      f"{100 * killed / max(total - get('🔇'), 1):>6.1f}%")
EOF
  tail -1 "$summary" >&2
  (cd "$dir" && "$MUTMUT" results >survivors.txt 2>&1) || true
done
cat "$summary"
echo "mutation: work in $WORK (each module's run.log and survivors.txt)" >&2
