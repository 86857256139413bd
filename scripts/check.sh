#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before the tests (and on their own: scripts/check.sh):
#   ruff          style and lint (with RUF100: no unused noqa)
#   mypy          types, strict for the packages, on the bench too
#   lint-imports  the layers: three independent wings over the shared package, no import loops
# Needs the venv scripts/test.sh makes.
set -euo pipefail
cd "$(dirname "$0")/.."

# The wings live beside the shared package (collector/ → statspout.collector, and so on, by
# package-dir in pyproject.toml); mypy and import-linter find modules on disk (and the latter
# follows no links), so they read a copy laid out as the installed package is.
tree=build/typecheck
rm -rf "$tree"
copy_modules() {  # copy_modules FOLDER TARGET
    mkdir -p "$2"
    cp "$1"/*.py "$2/"
}
copy_modules statspout "$tree/statspout"
for wing in collector router sinks top; do copy_modules "$wing" "$tree/statspout/$wing"; done

status=0
echo "ruff"
.venv/bin/ruff check --quiet --output-format concise . || status=1

echo "mypy"
# Paths are printed as in the repository, not as in the copy.
as_in_repository() {
    sed -e "s#^$tree/statspout/\(collector\|router\|sinks\)/#\1/#" -e "s#^$tree/##"
}
export MYPYPATH="$PWD/$tree:$PWD/tests:$PWD/bench"
.venv/bin/mypy --no-error-summary -p statspout 2>&1 | as_in_repository || status=1
# The bench on its own: what it imports is checked (and reported) by the line above.
.venv/bin/mypy --no-error-summary --follow-imports=silent bench/*.py 2>&1 | as_in_repository \
    || status=1

echo "lint-imports"
# From inside the copy, so that statspout is found there and not in the working directory.
(cd "$tree" && PYTHONPATH=. "$OLDPWD/.venv/bin/lint-imports" --no-cache "$OLDPWD/pyproject.toml") \
    || status=1

exit $status
