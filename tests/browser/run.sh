#!/bin/sh
# Runs the browser tests: ssepush.js and the demo page in headless Chromium (Debian's
# chromium package, driven by playwright-core; Playwright's own browser download is
# never used). SSEPUSH_BROKER=/abs/path/to/ssepush-broker overrides ../../build/ssepush-broker;
# CHROMIUM=/path/to/chromium overrides /usr/bin/chromium.
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules/playwright-core ]; then
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi
# One file at a time: the restart test reuses its broker's port after stopping it, and
# a broker of a parallel test that the kernel happened to give that port (both bind with
# SO_REUSEPORT) would share it.
exec node --test --test-concurrency=1 *.test.mjs
