#!/usr/bin/env bash
# Runs every native Go fuzz target (func FuzzX) of the module, one after the
# other, each for FUZZTIME, and prints a table of executions and results.
# See docs/fuzzing.md.
#
#   FUZZTIME=3m        how long each target runs (a duration, or Nx for N runs)
#   FUZZ='Agent|Tar'   only the targets whose name matches this regexp
#   FUZZPARALLEL=1     fuzzing workers per target (go test -parallel)
#   FUZZMINIMIZE=10s   time to minimize each new input (-fuzzminimizetime)
#
# A target that fails leaves its input in testdata/fuzz/<target>/ of its
# package, where plain `go test` runs it from then on; the run goes on with
# the next target and the script exits 1 at the end.
set -uo pipefail

FUZZTIME=${FUZZTIME:-3m}
FUZZ=${FUZZ:-.}
FUZZPARALLEL=${FUZZPARALLEL:-1}
FUZZMINIMIZE=${FUZZMINIMIZE:-10s}
# Temporary files of the targets (sandboxes, tar trees) on a tmpfs when
# there is one: far fewer waits on the disk.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi

# go test -list prints a package's matching names, then "ok <package>".
targets=()
names=()
while read -r line; do
  case "$line" in
    Fuzz*) names+=("$line") ;;
    ok*)
      pkg=$(awk '{print $2}' <<<"$line")
      for n in "${names[@]}"; do targets+=("$pkg $n"); done
      names=()
      ;;
  esac
done < <(go test -list '^Fuzz' ./... 2>/dev/null)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
results=()
failed=0
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  [[ "$name" =~ $FUZZ ]] || continue
  echo "== $name ($pkg) for $FUZZTIME"
  if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" \
    -parallel "$FUZZPARALLEL" "$pkg" >"$log" 2>&1; then
    result=pass
  else
    result=FAIL
    failed=1
    grep -v '^fuzz: elapsed' "$log" | tail -40
  fi
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  results+=("$(printf '%-24s %-50s %12s  %s' "$name" "${pkg#github.com/openslicer/openslicer/}" "${execs:-?}" "$result")")
done

printf '\n%-24s %-50s %12s  %s\n' target package executions result
printf '%s\n' "${results[@]}"
exit "$failed"
