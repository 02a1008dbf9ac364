#!/bin/bash
# Runs every test the build produced and ends with one line "N passed, N failed".
#   unit:        $BUILD/san/tests/test_*   (cmocka; each test case counts)
#   fuzz smoke:  $BUILD/fz/fuzz/fuzz_*     (FUZZ_SMOKE_SECONDS each over the seed corpus)
#   integration: tests/integration/*.sh    (each prints "PASS: name" / "FAIL: name" lines,
#                or one "SKIP: name (why)" line when the machine lacks what it needs)
# TESTS=pattern limits the run to files whose name matches the glob pattern.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-3}
TESTS=${TESTS:-*}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# libwebsockets/OpenSSL keep TLS-context objects after teardown (see the file).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
LOGDIR=$BUILD/test-logs
rm -rf "$LOGDIR" && mkdir -p "$LOGDIR"

passed=0 failed=0 skipped=0
failures=()

note_fail() { failed=$((failed + 1)); failures+=("$1"); }

run_unit() {
	local bin=$1 name log p f
	name=${bin##*/}
	log=$LOGDIR/$name.log
	timeout 300 "$bin" >"$log" 2>&1
	local rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	passed=$((passed + ${p:-0}))
	if [ -n "$f" ] && [ "$f" -gt 0 ]; then
		failed=$((failed + f))
		failures+=("$name: $(grep '^\[  FAILED  \] [a-z_]' "$log" | sed 's/.*\] //' | tr '\n' ' ')")
	elif [ $rc -ne 0 ]; then
		note_fail "$name (exit $rc, see $log)"
	fi
	printf '%-40s %s passed%s\n' "$name" "${p:-0}" "$([ $rc -ne 0 ] && echo ", FAILED (rc $rc)")"
}

run_fuzz() {
	local bin=$1 name corpus seeds log
	name=${bin##*/}
	log=$LOGDIR/$name.log
	corpus=$(mktemp -d)
	seeds=tests/fuzz/seeds/${name#fuzz_}
	[ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
	if "$bin" -max_total_time="$FUZZ_SMOKE_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$LOGDIR/$name-" "$corpus" >"$log" 2>&1; then
		passed=$((passed + 1))
		printf '%-40s ok (%s runs)\n' "$name" "$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')"
	else
		note_fail "$name (crash, see $log)"
		printf '%-40s FAILED\n' "$name"
	fi
	rm -rf "$corpus"
}

run_integration() {
	local t=$1 name log p f rc
	name=${t##*/}
	log=$LOGDIR/${name%.sh}.log
	if [ "$(id -u)" -ne 0 ]; then
		skipped=$((skipped + 1))
		printf '%-40s skipped (needs root for network namespaces)\n' "$name"
		return
	fi
	BUILD=$BUILD timeout "${INTEGRATION_TIMEOUT:-600}" bash "$t" >"$log" 2>&1
	rc=$?
	p=$(grep -c '^PASS: ' "$log")
	f=$(grep -c '^FAIL: ' "$log")
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ $rc -eq 0 ] && grep -q '^SKIP: ' "$log"; then
		skipped=$((skipped + 1)) # the test says why (e.g. tools not installed)
		printf '%-40s %s\n' "$name" "$(grep -m1 '^SKIP: ' "$log" | sed 's/^SKIP: [^ ]* //')"
		return
	fi
	passed=$((passed + p))
	if [ "$f" -gt 0 ]; then
		failed=$((failed + f))
		failures+=("$name: $(grep '^FAIL: ' "$log" | sed 's/^FAIL: //' | tr '\n' ';')")
	elif [ $rc -ne 0 ]; then
		note_fail "$name (exit $rc, see $log)"
	fi
	printf '%-40s %s passed, %s failed%s\n' "$name" "$p" "$f" "$([ $rc -ne 0 ] && echo " (rc $rc)")"
}

for bin in "$BUILD"/san/tests/test_*; do
	[ -x "$bin" ] || continue
	case ${bin##*/} in $TESTS) run_unit "$bin" ;; esac
done
for bin in "$BUILD"/fz/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	case ${bin##*/} in $TESTS) run_fuzz "$bin" ;; esac
done
for t in tests/integration/*.sh; do
	[ -f "$t" ] || continue
	case ${t##*/} in $TESTS) run_integration "$t" ;; esac
done

if [ ${#failures[@]} -gt 0 ]; then
	echo
	echo "Failures (logs in $LOGDIR):"
	printf '  %s\n' "${failures[@]}"
fi
echo
if [ $skipped -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
