#!/usr/bin/env bash
# Install what the build and the test suite need, on Debian 12, as root.
# Idempotent: apt is skipped when every package is already installed.
#
#   tgt                      private tgtd/tgtadm (the test target)
#   libiscsi-bin             iscsi-ls, iscsi-inq, ... (reference initiator)
#   libvirt-daemon + libvirt-daemon-driver-storage-iscsi-direct + libvirt-clients
#                            a private libvirtd/virsh for compatibility tests
#   libvirt-dev pkg-config gcc python3-dev
#                            to build libvirt-python (pip, [test] extra)
#   libxml2-utils            xmllint, which virt-xml-validate (libvirt-clients) runs
#   libvirt-daemon-driver-qemu qemu-system-x86 qemu-block-extra qemu-utils
#                            QEMU for the attach tests (its iSCSI driver) and qemu-img
#   python3 python3-pip      when missing (a debian:12 container or a minbase tree has
#                            neither); pip installs the package with --break-system-packages
# tests/integration/test_installed_tools.py runs every program these provide;
# scripts/test.sh runs it right after this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  tgt
  libiscsi-bin
  libvirt-dev
  pkg-config
  gcc
  python3-dev
  libvirt-daemon
  libvirt-daemon-driver-storage-iscsi-direct
  libvirt-clients
  libxml2-utils
  libvirt-daemon-driver-qemu
  qemu-system-x86
  qemu-block-extra
  qemu-utils
  mount
)

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  PKGS+=(python3 python3-pip)
elif ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  PKGS+=(python3-pip)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PKGS[@]}"
else
  echo "install-deps: Debian packages already installed"
fi

# The test-suite user for the private libvirtd (see tests/harness/libvirtd.py).
getent passwd nobody >/dev/null || { echo "install-deps: user 'nobody' missing" >&2; exit 1; }

# Python package + test tools. Debian's own python3 is "externally managed"
# (PEP 668); this is a disposable test machine, so install into it anyway.
PIP_ARGS=(--disable-pip-version-check --quiet --root-user-action=ignore)
if "$PYTHON" - <<'PY'
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")) else 1)
PY
then
  PIP_ARGS+=(--break-system-packages)
fi
# Skipped when everything imports and poolbackend is this checkout's (editable) copy.
if "$PYTHON" -c 'import poolbackend, libvirt, pytest, hypothesis, lxml, crcmod, mypy, ruff' 2>/dev/null \
   && [ "$(cd / && "$PYTHON" -c 'import os, poolbackend; print(os.path.dirname(os.path.dirname(poolbackend.__file__)))')" = "$PWD" ]; then
  echo "install-deps: Python packages already installed"
else
  "$PYTHON" -m pip install "${PIP_ARGS[@]}" -e '.[test]'
fi
# A minimal Debian tree (debootstrap minbase, some containers) has no /etc/hosts, so
# 'localhost' does not resolve; every installed Debian has it, and the tests use it.
if ! getent hosts localhost >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >>/etc/hosts
  echo "install-deps: added localhost to /etc/hosts"
fi
echo "install-deps: done"
