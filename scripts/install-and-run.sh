#!/usr/bin/env bash
# Install statspout and run the pipeline (collector → router → stdout sink) under supervisord.
# Starts a Docker engine first when none answers. Run again to pick up changes: an already
# running supervisord is told to re-read its configuration instead.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/common.sh

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
python_venv_missing && missing+=(python3-venv)
apt_install "${missing[@]}"

if ! $sudo docker info >/dev/null 2>&1; then
    echo "Starting dockerd (log: /var/log/statspout-dockerd.log)"
    $sudo sh -c 'nohup dockerd >>/var/log/statspout-dockerd.log 2>&1 &'
    for _ in $(seq 60); do $sudo docker info >/dev/null 2>&1 && break; sleep 1; done
    $sudo docker info >/dev/null 2>&1 || { echo "dockerd did not start" >&2; exit 1; }
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
mkdir -p run

# The collector reads the Docker socket, which is root's.
if [ -S run/supervisor.sock ] && $sudo .venv/bin/supervisorctl pid >/dev/null 2>&1; then
    $sudo .venv/bin/supervisorctl reread
    $sudo .venv/bin/supervisorctl update
else
    $sudo .venv/bin/supervisord -c supervisord.conf
fi
sleep 3
$sudo .venv/bin/supervisorctl status
echo "Samples: tail -f run/sink-stdout.out    Stop: .venv/bin/supervisorctl shutdown"
