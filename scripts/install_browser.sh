#!/usr/bin/env bash
# Install the headless browser used by the UI tests (assets_tests/ui): Debian's chromium and
# chromium-driver. Idempotent: does nothing when both are present. Never downloads a browser of
# its own; Playwright drives the system Chromium at /usr/bin/chromium.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    echo "browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") already installed"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    cat >&2 <<EOF
browser: $CHROMIUM or $CHROMEDRIVER is missing and this script is not running as root.
  Install them once, then run the tests again:
      sudo apt-get install -y chromium chromium-driver      (Debian, Ubuntu)
  Without them the browser tests in assets_tests/ui are skipped (pytest reports why).
EOF
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: apt-get not found; install Chromium and ChromeDriver with your package manager" \
        "at $CHROMIUM and $CHROMEDRIVER (or set CHROMIUM to the browser's path)." >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium chromium-driver; then
    apt-get update
    apt-get install -y --no-install-recommends chromium chromium-driver
fi
echo "browser: $("$CHROMIUM" --version) installed"
