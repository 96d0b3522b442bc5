#!/bin/sh
# Runs the ssepush functional tests against the broker binary.
# SSEPUSH_BROKER=/abs/path/to/ssepush-broker overrides ../../build/ssepush-broker.
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules/eventsource ]; then
	npm ci --no-audit --no-fund
fi
exec node --test --test-concurrency=2 *.test.mjs
