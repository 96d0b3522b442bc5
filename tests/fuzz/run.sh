#!/bin/sh
# Runs the libFuzzer targets that `make fuzz` built (see tests/fuzz/README.md).
#   run.sh DIR SECONDS TARGET...          fuzz each target SECONDS seconds, one after
#                                         the other; corpus DIR/<target>/, findings in
#                                         DIR/artifacts/<target>/
#   run.sh --smoke DIR 0 TARGET...        run each target once over its committed seeds
# Seeds come from tests/fuzz/corpus/<target>/ (notify: tests/fixtures/cyrus-notify).
# A seed named crash-* is a finding not fixed yet: it is run on its own first and
# reported (still failing, or fixed), never used as a seed, so that one known bug does
# not stop the search for others. Each run's log is DIR/<target>.log; its last status line
# (executions, cov, ft) is printed. Exits 1 if a target found something (or a smoke failed).
set -u
smoke=0
if [ "${1:-}" = --smoke ]; then
	smoke=1
	shift
fi
[ $# -ge 3 ] || { echo "usage: $0 [--smoke] DIR SECONDS TARGET..." >&2; exit 2; }
dir=$1 seconds=$2
shift 2
here=$(dirname "$0")
failed=""

# The most bytes libFuzzer may try for each target (each fuzzer bounds its input too).
max_len() {
	case $1 in
	notify|sse) echo 70000 ;;
	config) echo 65536 ;;
	batch) echo 16384 ;;
	request) echo 8192 ;;
	*) echo 4096 ;;
	esac
}

# The seed files of a target, one a line (the crash-* reproducers left out).
seeds() {
	if [ "$1" = notify ]; then
		ls "$here"/../fixtures/cyrus-notify/*/*.bin
	fi
	if [ -d "$here/corpus/$1" ]; then
		find "$here/corpus/$1" -type f ! -name 'crash-*' | sort
	fi
}

for t in "$@"; do
	bin=$dir/fuzz_$t
	[ -x "$bin" ] || { echo "$bin: not built (make fuzz builds it)" >&2; exit 2; }
	# Known findings: each still failing is reported, not counted again.
	for c in "$here/corpus/$t"/crash-*; do
		[ -f "$c" ] || continue
		if "$bin" -runs=1 "$c" >/dev/null 2>&1; then
			echo "== fuzz_$t: $c no longer fails: the bug is fixed, rename it (a seed) or remove it"
		else
			echo "== fuzz_$t: known finding $c still fails"
		fi
	done
	if [ $smoke = 1 ]; then
		# Every seed once, as files (nothing is written back); -runs=0 would skip them.
		out=$(seeds "$t" | xargs "$bin" -runs=1 2>&1) ||
			{ echo "$out" | tail -40; echo "== fuzz_$t: a seed failed" >&2; failed="$failed $t"; continue; }
		echo "== fuzz_$t: $(seeds "$t" | wc -l) seeds ok"
		continue
	fi
	mkdir -p "$dir/$t" "$dir/artifacts/$t"
	seeds "$t" | while read -r f; do cp -n "$f" "$dir/$t/"; done
	before=$(ls "$dir/artifacts/$t" | wc -l)
	echo "== fuzz_$t: $seconds s, corpus $dir/$t"
	# Fork mode with -ignore_crashes: a finding is saved and the search goes on for the
	# whole time (one known bug would otherwise end every run of its target at once).
	"$bin" -fork=1 -ignore_crashes=1 -max_total_time="$seconds" -max_len="$(max_len "$t")" \
	    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$dir/artifacts/$t/" "$dir/$t" \
	    >"$dir/$t.log" 2>&1
	rc=$?
	grep -E '^#[0-9]+: cov:' "$dir/$t.log" | tail -1
	after=$(ls "$dir/artifacts/$t" | wc -l)
	if [ "$rc" != 0 ] || [ "$after" -gt "$before" ]; then
		echo "== fuzz_$t: FOUND $((after - before)) (exit $rc), see $dir/$t.log and $dir/artifacts/$t/:" >&2
		ls -t "$dir/artifacts/$t" | head -n $((after - before > 0 ? after - before : 1)) | sed 's/^/   /' >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: failures in:$failed" >&2
	exit 1
fi
exit 0
