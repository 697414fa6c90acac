#!/usr/bin/env bash
# Copy pinned front-end libraries from the npm registry into static/vendor/ (committed; no CDN at
# runtime, no npm needed for `make run`). Re-run after changing a version below.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSTRAP=5.3.9
HTMX=2.0.11
CHARTJS=4.6.1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "bootstrap@$BOOTSTRAP" "htmx.org@$HTMX" "chart.js@$CHARTJS" >/dev/null)
for f in "$tmp"/*.tgz; do mkdir -p "${f%.tgz}" && tar -xzf "$f" -C "${f%.tgz}"; done
mkdir -p static/vendor/bootstrap static/vendor/htmx static/vendor/chartjs
cp "$tmp/bootstrap-$BOOTSTRAP/package/dist/css/bootstrap.min.css" static/vendor/bootstrap/
cp "$tmp/bootstrap-$BOOTSTRAP/package/dist/js/bootstrap.bundle.min.js" static/vendor/bootstrap/
cp "$tmp/bootstrap-$BOOTSTRAP/package/LICENSE" static/vendor/bootstrap/LICENSE
cp "$tmp/htmx.org-$HTMX/package/dist/htmx.min.js" static/vendor/htmx/
cp "$tmp/htmx.org-$HTMX/package/LICENSE" static/vendor/htmx/LICENSE
cp "$tmp/chart.js-$CHARTJS/package/dist/chart.umd.min.js" static/vendor/chartjs/ 2>/dev/null \
  || cp "$tmp/chart.js-$CHARTJS/package/dist/chart.umd.js" static/vendor/chartjs/chart.umd.min.js
cp "$tmp/chart.js-$CHARTJS/package/LICENSE.md" static/vendor/chartjs/LICENSE.md
echo "bootstrap $BOOTSTRAP, htmx $HTMX, chart.js $CHARTJS" > static/vendor/VERSIONS
