#!/usr/bin/env bash
# e2e_browser.sh - the demo page in headless Chromium against `lostd serve` on
# loopback with the fixture model (tests/browser/demo.test.mjs). Installs the
# test's npm packages (playwright-core, and axe-core for the accessibility
# checks; pinned by package-lock.json) when either is missing from
# tests/browser/node_modules; never downloads a browser: it drives the Debian
# one. Prints "PASS browser: ..." / "FAIL browser: ...: why" per
# check; prints SKIP and exits 0 when node (>= 18) or Chromium is missing.
# Env: LOSTD_BIN (the binary), CHROMIUM (default /usr/bin/chromium).
# Screenshots go to tests/out/ (demo.png, demo-phone.png, demo-error.png,
# demo-eigen.png, demo-compare.png, ...).
set -u
cd "$(dirname "$0")/.."
export LOSTD_BIN=${LOSTD_BIN:-$PWD/build/lostd}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
DIR=tests/browser

if ! command -v node >/dev/null 2>&1; then
    echo "SKIP browser: node is not installed (apt-get install -y nodejs npm)"
    exit 0
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 18 ]; then
    echo "SKIP browser: node $(node --version) is older than 18"
    exit 0
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP browser: $CHROMIUM not found (apt-get install -y chromium)"
    exit 0
fi
if [ ! -x "$LOSTD_BIN" ]; then
    echo "FAIL browser: $LOSTD_BIN is not built"
    exit 1
fi

if [ ! -d "$DIR/node_modules/playwright-core" ] || [ ! -d "$DIR/node_modules/axe-core" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "SKIP browser: npm is not installed (apt-get install -y npm)"
        exit 0
    fi
    log=$(mktemp)
    if ! (cd "$DIR" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
        echo "FAIL browser npm ci: $(tail -n 3 "$log" | tr '\n' ' ')"
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
fi

mkdir -p tests/out
cd "$DIR" && node --test --test-reporter=./pass_fail_reporter.mjs demo.test.mjs
