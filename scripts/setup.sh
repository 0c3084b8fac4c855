#!/usr/bin/env bash
# Installs what OpenSlicer needs on a fresh Debian 12 machine (run as root):
# QEMU (the backend that runs without KVM), busybox-static and e2fsprogs (the
# built-in min image), and refreshes apt's lists so the daemon can fetch the
# Debian cloud kernel package. Idempotent: installs only what is missing.
set -euo pipefail

pkgs=(qemu-system-x86 busybox-static e2fsprogs curl ca-certificates make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "$(id -u)" != 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: missing packages ${missing[*]}: run as root" >&2
    exit 1
  fi
  exit 0
fi

# The min image's kernel comes from apt: the lists must know the package.
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  echo "setup: add /usr/local/go/bin to PATH" >&2
fi
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || {
  echo "setup: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }
echo "setup: ok"
