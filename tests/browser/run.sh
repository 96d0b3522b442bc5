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
exec node --test --test-concurrency=2 *.test.mjs
