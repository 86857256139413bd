# Shared by the scripts in this folder: root or sudo, and installing missing Debian packages.
# shellcheck shell=bash

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# apt_install PACKAGE…: install the given Debian packages (call it only with missing ones).
apt_install() {
    [ $# -gt 0 ] || return 0
    echo "Installing $*"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}

# python_venv_missing: true when python3 cannot make a virtual environment (python3-venv).
python_venv_missing() {
    ! python3 -c "import ensurepip, venv" 2>/dev/null
}
