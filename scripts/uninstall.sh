#!/usr/bin/env bash
# Removes what scripts/install.sh installed. Stores (plain directories) are left alone; running mounts keep
# working until unmounted (the daemon holds its own copy of the binary), but are reported.
#
# usage: scripts/uninstall.sh [--prefix DIR] [--destdir DIR]   (the same values given to install.sh)
set -euo pipefail

prefix=/usr/local
destdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --destdir) destdir="$2"; shift 2 ;;
        -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: run as root (or give the --destdir used to stage)" >&2
    exit 1
fi

unit="$destdir/etc/systemd/system/assetfs.service"
if [ -z "$destdir" ] && [ -f "$unit" ] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-enabled --quiet assetfs.service 2>/dev/null; then
    echo "uninstall.sh: assetfs.service is enabled: run 'systemctl disable --now assetfs.service' first" >&2
    exit 1
fi
if [ -z "$destdir" ] && grep -q ' fuse.assetfs ' /proc/mounts 2>/dev/null; then
    echo "uninstall.sh: note: assetfs mounts are still active (unmount them with umount or assetfs umount):" >&2
    grep ' fuse.assetfs ' /proc/mounts | cut -d' ' -f1,2 | sed 's/^/  /' >&2
fi

for f in "$destdir$prefix/bin/assetfs" "$destdir/sbin/mount.fuse.assetfs" \
    "$destdir/etc/bash_completion.d/assetfs" "$unit"; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        rm -f "$f"
        echo "removed $f"
    fi
done
[ -z "$destdir" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] && systemctl daemon-reload || true
