#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright. Install it when missing and possible.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || {
    echo "could not install chromium; the browser tests will fail" >&2; exit 0; }
else
  echo "warning: /usr/bin/chromium is missing; install Debian's 'chromium' package or the browser tests fail" >&2
fi
