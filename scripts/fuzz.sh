#!/bin/bash
# Run every libFuzzer target for FUZZ_SECONDS each, keeping a corpus per target in
# tests/fuzz/corpus-<name>/ (git-ignored) seeded from tests/fuzz/seeds/<name>/.
# Prints executions per target; exits non-zero if any target crashed or leaked.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
bad=0
for bin in "$BUILD"/fz/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=${bin##*/}
	target=${name#fuzz_}
	corpus=tests/fuzz/corpus-$target
	mkdir -p "$corpus"
	[ -d tests/fuzz/seeds/$target ] && cp -rn tests/fuzz/seeds/$target/. "$corpus"/
	log=$BUILD/fz/$name.log
	if "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$BUILD/fz/$name-" "$corpus" >"$log" 2>&1; then
		res=ok
	else
		res=FAILED; bad=1
	fi
	execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
	[ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
	printf '%-28s %-6s %12s executions in %ss\n' "$name" "$res" "${execs:-?}" "$FUZZ_SECONDS"
done
exit $bad
