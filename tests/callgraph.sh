#!/bin/sh
# The broker's file-level call graph, from the symbols of its objects (nm): file A
# -> file B when A uses a function or variable that B defines. Prints the edges
# (with -v) and fails when the broker's files call each other in a circle, so the
# one-way stack (higher files call lower ones, never back) stays measured and kept.
# usage: tests/callgraph.sh [-v] BUILD_DIR
set -eu
verbose=0
if [ "${1:-}" = "-v" ]; then verbose=1; shift; fi
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for o in "$build"/broker/*.o "$build"/common/*.o; do
	f=$(basename "$(dirname "$o")")/$(basename "$o" .o)
	[ -e "$f.c" ] || continue	# a stale object of a removed file
	nm --defined-only -g "$o" | awk -v f="$f" 'NF == 3 { print $3, f }' >>"$tmp/defs"
	nm -u "$o" | awk -v f="$f" '{ print $NF, f }' >>"$tmp/uses"
done
sort -u "$tmp/defs" >"$tmp/defs.s"
sort -u "$tmp/uses" >"$tmp/uses.s"
# symbol user, joined with symbol definer -> "user definer"
join "$tmp/uses.s" "$tmp/defs.s" | awk '$2 != $3 { print $2, $3 }' | sort -u >"$tmp/edges"
if [ "$verbose" = 1 ]; then cat "$tmp/edges"; fi
echo "call graph: $(wc -l <"$tmp/edges") edges between $(cut -d' ' -f1,2 "$tmp/edges" | tr ' ' '\n' | sort -u | wc -l) files"
# Strongly connected components of more than one file are circles of calls.
python3 - "$tmp/edges" <<'PY'
import sys
g = {}
for line in open(sys.argv[1]):
    a, b = line.split()
    g.setdefault(a, set()).add(b)
    g.setdefault(b, set())
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in sorted(g[v]):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: sccs.append(sorted(c))
sys.setrecursionlimit(10000)
for v in sorted(g):
    if v not in index: visit(v)
for c in sccs:
    print(f"call graph: {len(c)} files call each other in a circle: {' '.join(c)}", file=sys.stderr)
if sccs: sys.exit(1)
print("call graph: no circle")
PY
