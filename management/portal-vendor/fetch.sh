#!/usr/bin/env bash
# Re-fetches the browser libraries the developer portal vendors, at the versions pinned in
# package-lock.json, and copies the built files where the build and the tests read them:
#   swagger-ui-dist -> management/portal/assets/vendor/swagger-ui/  (embedded in the binary)
#   axe-core        -> tests/fixtures/portal/axe/                    (browser tests only)
# The Rust build never runs this: the copied files are committed. Needs node and npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# --ignore-scripts: no install script runs (swagger-ui-dist depends on @scarf/scarf, whose
# postinstall would report the install).
npm ci --ignore-scripts --no-audit --no-fund
ui="$here/../portal/assets/vendor/swagger-ui"
axe="$here/../../tests/fixtures/portal/axe"
rm -rf "$ui" "$axe"
mkdir -p "$ui" "$axe"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE package.json; do
    cp "node_modules/swagger-ui-dist/$file" "$ui/"
done
# The source map is not vendored: drop the comment that points at it.
sed -i '/^\/\/# sourceMappingURL=/d' "$ui/swagger-ui-bundle.js"
sed -i 's|/\*# sourceMappingURL=.*\*/||' "$ui/swagger-ui.css"
for file in axe.min.js LICENSE package.json; do
    cp "node_modules/axe-core/$file" "$axe/"
done
echo "swagger-ui-dist $(node -p 'require("./node_modules/swagger-ui-dist/package.json").version') and axe-core $(node -p 'require("./node_modules/axe-core/package.json").version') copied"
