#!/usr/bin/env bash
# Install what the tests need, start what they need, run them.
#   scripts/test.sh                 the whole suite
#   scripts/test.sh tests/router    any pytest arguments
# Needs root (or sudo) on Debian/Ubuntu: Docker engine, InfluxDB 1.x, Prometheus, busybox-static
# (the test image is made from it), iproute2 (network namespaces), Podman (the collector against
# its Docker-compatible API), chromium and chromium-driver (the web page's browser tests), tmux
# (statspout-top's tests), Python venv support, debootstrap (the base of the collector's
# container image, made offline) and docker-compose (runs our docker-compose.yml).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/common.sh

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v influxd >/dev/null || missing+=(influxdb)
command -v prometheus >/dev/null || missing+=(prometheus)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || missing+=(busybox-static)
command -v ip >/dev/null || missing+=(iproute2)
[ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)               # the REST sink's web page
command -v chromedriver >/dev/null || missing+=(chromium-driver)   # driven through Selenium
command -v tmux >/dev/null || missing+=(tmux)  # the terminal statspout-top is tested in
command -v podman >/dev/null || missing+=(podman)
python_venv_missing && missing+=(python3-venv)
apt_install "${missing[@]}"

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# Lint, types and import contracts first: a failure there fails the run.
scripts/check.sh

# A Docker engine (dockerd is started when none answers) and the local test image.
$sudo .venv/bin/python tests/support/docker_engine.py

exec .venv/bin/python -m pytest "$@"
