#!/usr/bin/env bash
# Installs what the toolkit needs on Debian 12 (bookworm), skipping what is already there:
#   - Debian's chromium (browser tests; it also ships the SwiftShader Vulkan driver) and libvulkan1;
#   - Mesa 25's lavapipe from bookworm-backports: a software Vulkan driver that Dawn (Node) accepts
#     and that is 5-17x faster than SwiftShader here (Debian 12's own Mesa 22 is rejected by Dawn);
#   - the npm packages (npm ci) when node_modules is missing or older than package-lock.json.
#   --node-only: only the npm packages (what serving the demo needs; the browser brings its own WebGPU).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--node-only" ]; then
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need_apt+=(libvulkan1)
lavapipe_ok=false
if [ -f /usr/share/vulkan/icd.d/lvp_icd.json ] || [ -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
  # Only Mesa >= 25 (the backport) works with Dawn.
  ver=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
  dpkg --compare-versions "$ver" ge 25 && lavapipe_ok=true
fi

if [ ${#need_apt[@]} -gt 0 ] || [ "$lavapipe_ok" = false ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "setup: need root to apt-get install: ${need_apt[*]} mesa-vulkan-drivers (bookworm-backports)" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends chromium libvulkan1
  $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers
fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
