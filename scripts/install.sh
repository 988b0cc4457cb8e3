#!/usr/bin/env bash
# Installs assetfs system-wide (as root):
#   /usr/local/bin/assetfs                   the CLI and mount daemon (release build)
#   /sbin/mount.fuse.assetfs                 the mount(8) helper: `mount -t fuse.assetfs STORE MNT`, fstab lines
#   /etc/bash_completion.d/assetfs           bash completion (`assetfs --generate-completion-script bash`)
#   /etc/systemd/system/assetfs.service      only with --systemd; not enabled (see the unit's comments)
#
# usage: scripts/install.sh [--binary PATH] [--prefix DIR] [--destdir DIR] [--systemd]
#   --binary PATH   install this binary instead of building one (swift build -c release)
#   --prefix DIR    where bin/assetfs goes (default /usr/local)
#   --destdir DIR   stage everything under DIR instead of / (packaging; no root needed)
#   --systemd       also install mount-examples/systemd/assetfs.service
# scripts/uninstall.sh removes the same files (stores are plain directories: never touched).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
prefix=/usr/local
destdir=""
systemd=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --destdir) destdir="$2"; shift 2 ;;
        --systemd) systemd=1; shift ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (or stage with --destdir DIR)" >&2
    exit 1
fi

if [ -z "$binary" ]; then
    echo "install.sh: building assetfs (release)" >&2
    swift build -c release --product assetfs >&2
    binary="$(swift build -c release --show-bin-path)/assetfs"
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }

bin_dest="$destdir$prefix/bin/assetfs"
helper_dest="$destdir/sbin/mount.fuse.assetfs"
completion_dest="$destdir/etc/bash_completion.d/assetfs"
unit_dest="$destdir/etc/systemd/system/assetfs.service"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The helper learns where the binary is installed (mount(8) and systemd may run it with a minimal PATH).
sed "s|^installed_bin=\"\".*|installed_bin=\"$prefix/bin/assetfs\"  # written by install.sh|" \
    scripts/mount.fuse.assetfs >"$tmp/mount.fuse.assetfs"
"$binary" --generate-completion-script bash >"$tmp/completion"
grep -q assetfs "$tmp/completion" || { echo "install.sh: $binary produced no bash completion" >&2; exit 1; }

install -D -m 755 "$binary" "$bin_dest"
install -D -m 755 "$tmp/mount.fuse.assetfs" "$helper_dest"
install -D -m 644 "$tmp/completion" "$completion_dest"
echo "installed $bin_dest"
echo "installed $helper_dest"
echo "installed $completion_dest"
if [ "$systemd" = 1 ]; then
    install -D -m 644 mount-examples/systemd/assetfs.service "$unit_dest"
    echo "installed $unit_dest (edit the store path, then: systemctl daemon-reload && systemctl enable --now assetfs)"
fi
"$bin_dest" --version >/dev/null
