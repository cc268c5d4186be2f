#!/usr/bin/env bash
# Installs what dockgate needs on Debian/Ubuntu: system packages (as root, or through sudo)
# and a virtualenv in .venv with the project and its development tools.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc      # the virtualenv, and builds of C extensions
  mosquitto mosquitto-clients               # the MQTT v5 broker stations and scooters use
  pcscd libpcsclite-dev swig vsmartcard-vpcd # PC/SC, what pyscard builds with, the virtual reader
  socat                                     # serial pty pairs for the PN532 line
  victoria-metrics                          # time-series server (InfluxDB v2 write API)
  chromium chromium-driver                  # headless browser tests of the status page
  systemd                                   # systemd-analyze: checks of the service unit
  postgresql                                # the second store engine; tests start private ones
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian starts the broker, pcscd and PostgreSQL as system services on install; dockgate runs
# private ones.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for svc in mosquitto pcscd.socket pcscd postgresql; do
    ${SUDO:-} systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.dockgate-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing dockgate into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
# Bytecode of the project's own modules, as pip writes it for every package it installs: an
# editable install leaves it to the first import, which writes nothing where it may not (a
# service user, PYTHONDONTWRITEBYTECODE); the daemon then compiled about 170 modules at every
# start (0.12 s of its 0.75 s of imports). Python checks each file's date: a stale one is
# compiled again in memory, never used.
.venv/bin/python -m compileall -q -j 0 gateway drivers api firmware-sim/firmware_sim >/dev/null
echo "setup: ready (.venv/bin/dockgate)"
