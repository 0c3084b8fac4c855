#!/usr/bin/env bash
# Installs what OpenSlicer needs on a fresh Debian 12 machine (run as root):
# QEMU (the backend that runs without KVM), busybox-static, bash-static and
# e2fsprogs (the built-in min image), qemu-utils (qemu-img and qemu-io for
# copy-on-write disks), mmdebstrap (slicer image build debian), and refreshes
# apt's lists so the daemon can fetch the Debian cloud kernel package.
# Idempotent: installs only what is missing.
set -euo pipefail

pkgs=(qemu-system-x86 qemu-utils busybox-static bash-static e2fsprogs mmdebstrap curl ca-certificates make)
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

# Go: the version go.mod asks for, in /usr/local/go. Debian 12 ships only Go
# 1.19, so when it is missing, Debian's Go fetches the official toolchain,
# which is published as the Go module golang.org/toolchain, by name.
dest=${SLICER_GO_DIR:-/usr/local/go}
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(dirname "$0")/../go.mod")
have=$(PATH=$dest/bin:$PATH go env GOVERSION 2>/dev/null || true)
if [ "$(printf '%s\n' "go$want" "${have:-go0}" | sort -V | head -1)" != "go$want" ]; then
  echo "setup: installing Go $want (have ${have:-none})"
  dpkg-query -W -f='${Status}' golang-1.19-go 2>/dev/null | grep -q "install ok installed" ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-1.19-go >/dev/null
  tmp=$(mktemp -d)
  mod="golang.org/toolchain@v0.0.1-go$want.linux-$(dpkg --print-architecture)"
  dir=$(cd "$tmp" && GOMODCACHE="$tmp/cache" GOFLAGS= /usr/lib/go-1.19/bin/go mod download -json "$mod" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "setup: could not download $mod" >&2; exit 1; }
  rm -rf "$dest" && cp -r "$dir" "$dest"
  chmod -R u+w "$dest" "$tmp" && chmod +x "$dest"/bin/* "$dest"/pkg/tool/*/*
  rm -rf "$tmp"
fi
echo "setup: ok ($("$dest/bin/go" version 2>/dev/null || go version))"
