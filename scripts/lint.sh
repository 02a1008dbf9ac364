#!/bin/sh
# Static checks over the C sources (run by `make lint` and `make check`):
#   cppcheck   its default checks plus "warning" and "portability": bugs a compiler
#              does not see (leaks on early returns, index-before-bounds, printf
#              types through macros, uninitialised reads). unknownMacro is off: it
#              only means cppcheck did not expand a library macro (json-c's foreach).
#   clang-tidy a short list of bug-finding checks, each a mistake this kind of code
#              makes: memset arguments swapped, a widening cast after the overflow,
#              a missing comma between string literals, a loop whose condition never
#              changes, a bool* used as a bool, a macro argument with side effects
#              evaluated twice, a stray ';' after if/for, `continue` in
#              do-while(false), a loop counter narrower than its bound, an expression
#              whose operands are the same, atoi/sscanf without error checking, calls
#              that are not async-signal-safe in a signal handler. (Left out as noisy
#              here: bugprone-sizeof-expression flags the kernel idiom sizeof(*p) for
#              arrays of pointers; not-null-terminated-result flags every memcpy of
#              a 4-byte wire magic.)
# Findings are errors. A false positive gets an inline
# /* cppcheck-suppress <id> */ or /* NOLINT(<check>) */ with the reason beside it.
# CFLAGS_EXTRA: include flags for the libraries (the Makefile passes pkg-config's).
set -eu
cd "$(dirname "$0")/.."

DIRS="lib tun stream daemon ctl rendezvous nameserver"
JOBS=${JOBS:-2}
rc=0

echo "  LINT   cppcheck"
if ! cppcheck -q -j"$JOBS" --std=c11 --enable=warning,portability --inline-suppr \
	--suppress=unknownMacro --error-exitcode=1 -I. -D_GNU_SOURCE \
	--template='{file}:{line}: {severity}: {message} [{id}]' $DIRS; then
	rc=1
fi

CHECKS='-*,bugprone-suspicious-memset-usage,bugprone-misplaced-widening-cast,bugprone-suspicious-missing-comma,bugprone-infinite-loop,bugprone-bool-pointer-implicit-conversion,bugprone-macro-repeated-side-effects,bugprone-suspicious-semicolon,bugprone-terminating-continue,bugprone-too-small-loop-variable,misc-redundant-expression,cert-err34-c,bugprone-signal-handler'
echo "  LINT   clang-tidy"
# shellcheck disable=SC2086
if ! find $DIRS -name '*.c' | sort | xargs -P"$JOBS" -n 8 sh -c \
	'clang-tidy -quiet --checks="$0" --warnings-as-errors="*" "$@" -- -std=c11 -D_GNU_SOURCE -I. '"${CFLAGS_EXTRA:-}"' 2>/dev/null' \
	"$CHECKS"; then
	rc=1
fi
[ $rc -eq 0 ] && echo "  LINT   clean"
exit $rc
