#!/bin/sh
# clang-format (.clang-format) on the lines a change touches, never on whole files
# (the tree predates the rule; reformatting it all would bury its history).
#   scripts/format.sh          format the lines changed since HEAD (uncommitted work)
#   scripts/format.sh --check  fail, showing the diff, when the lines changed by the
#                              last commit or since are not formatted
# What "changed" means for --check, so that it works in CI on a fresh clone: the
# difference between HEAD's only parent and the working tree. When HEAD has no single
# parent at hand (a merge commit: its lines were checked on their branches; the
# first commit; a shallow clone without the parent) it is the uncommitted changes
# only. Outside a git checkout there is nothing to compare and the check passes.
set -eu
cd "$(dirname "$0")/.."

if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	echo "  FORMAT not a git checkout: skipped"
	exit 0
fi
if [ "${1:-}" != "--check" ]; then
	git clang-format --force HEAD -- '*.c' '*.h'
	exit 0
fi
base=HEAD
if [ "$(git rev-list --parents -n 1 HEAD | wc -w)" -eq 2 ] && git rev-parse --verify -q HEAD~1 >/dev/null; then
	base=HEAD~1
fi
out=$(git clang-format --diff "$base" -- '*.c' '*.h' 2>&1) || true
case $out in
*"diff --git"*)
	printf '%s\n' "$out"
	echo "  FORMAT lines changed since $base are not formatted: run make format (or apply the diff above)" >&2
	exit 1 ;;
esac
echo "  FORMAT lines changed since $base: formatted"
