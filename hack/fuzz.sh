#!/usr/bin/env bash
# Runs one Go fuzz target for a fixed time and tells a finding from the fuzzing
# coordinator's shutdown race.
#
# usage: hack/fuzz.sh GO PACKAGE TARGET FUZZTIME
#
# With a duration -fuzztime, `go test -fuzz` can end with a bare
# "context deadline exceeded" when a worker is still busy as the time runs out
# (golang/go#75804, fixed in Go 1.27). That result carries no input and no
# failure location. A real finding always writes its input to
# PACKAGE/testdata/fuzz/TARGET and names the failing line. So the run fails when
# a new input was written or the output holds anything other than the bare
# deadline message; the bare message alone is reported and the seed corpus is
# replayed, which must pass.
set -euo pipefail

go_bin=$1 pkg=$2 target=$3 fuzztime=$4
corpus="$pkg/testdata/fuzz/$target"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

list_corpus() { if [[ -d $corpus ]]; then ls -1 "$corpus"; fi; }
before=$(list_corpus)

rc=0
"$go_bin" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 10s "$pkg" 2>&1 | tee "$log" || rc=$?
[[ $rc -eq 0 ]] && exit 0

after=$(list_corpus)
if [[ "$before" != "$after" ]]; then
	echo "fuzz: $target wrote a failing input to $corpus:" >&2
	comm -13 <(echo "$before") <(echo "$after") >&2
	exit "$rc"
fi
# The failure block is everything from "--- FAIL" up to the package's FAIL line;
# the race leaves exactly one line in it.
block=$(sed -n '/^--- FAIL: /,/^FAIL$/p' "$log" | sed '1d;$d' | sed 's/^[[:space:]]*//')
if [[ "$block" != "context deadline exceeded" ]]; then
	exit "$rc"
fi
echo "fuzz: $target: the fuzzing coordinator stopped with a bare deadline and no input (golang/go#75804); replaying the seed corpus" >&2
"$go_bin" test -count=1 -run "^${target}\$" "$pkg"
