#!/usr/bin/env bash
# Install everything the demo, the tests and the benchmarks need on a Debian 12 machine (as root).
# Idempotent: apt runs only when a package is missing; pip installs the package in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(tgt libiscsi-bin libvirt-dev pkg-config gcc python3-dev
              libvirt-daemon libvirt-daemon-driver-storage-iscsi-direct libvirt-clients)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing Debian packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import poolbackend, libvirt, pytest, hypothesis, lxml, crcmod' 2>/dev/null \
   || [ "$("$PY" -c 'import poolbackend, os; print(os.path.dirname(os.path.dirname(poolbackend.__file__)))')" != "$PWD" ]; then
  "$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
fi
