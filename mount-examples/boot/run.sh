#!/usr/bin/env bash
# Mounting at boot, three ways, each tested here with a private store and mount point:
#   1. the mount(8) helper scripts/mount.fuse.assetfs, called directly the way mount(8) calls it;
#   2. `mount -t fuse.assetfs STORE MNT -o allow_other` and an fstab line (fstab.example, through
#      `mount --fstab FILE`), with the helper installed for the duration as /sbin/mount.fuse.assetfs;
#   3. the systemd unit ../systemd/assetfs.service: its ExecStartPre/ExecStart/ExecStop lines run the way
#      systemd runs them (Type=simple), plus SIGTERM, which is what `systemctl stop` sends after ExecStop.
# Then scripts/install.sh and scripts/uninstall.sh, staged into a --destdir.
#
# usage: run.sh [ASSETFS_BINARY [WORK_DIR]]   (as root: it mounts, and briefly installs the mount helper)
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
example_setup boot "$@"
[ "$(id -u)" = 0 ] || die "run as root: mount(8) helpers and umount need it"
require_reachable_by_other_users
STORE="$ASSETFS_STORE"
HELPER="$REPO/scripts/mount.fuse.assetfs"

sample_version 1
sample_version 2 --tag prod
want_sum="$(sha256sum <"$WORK/dataset/labels.json")"

# expect_mounted HOW [allow_other]: the mount is ours, answers, and serves the right bytes (to uid 1000 with
# allow_other).
expect_mounted() {
    local line
    line="$(awk -v p="$MNT" '$5 == p' /proc/self/mountinfo)"
    [ -n "$line" ] || die "$1: nothing mounted on $MNT"
    echo "mountinfo: $line"
    check "$1: file system type" "$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }' <<<"$line")" "fuse.assetfs"
    check "$1: source" "$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 2); exit } }' <<<"$line")" "assetfs:$STORE"
    check "$1: prod" "$(readlink "$MNT/data/prod")" "v2"
    check "$1: bytes of data/prod/labels.json" "$(sha256sum <"$MNT/data/prod/labels.json")" "$want_sum"
    if [ "${2:-}" = allow_other ]; then
        case "$line" in *allow_other*) ;; *) die "$1: no allow_other in $line" ;; esac
        check "$1: uid 1000 reads too (allow_other)" \
            "$(setpriv --reuid 1000 --regid 1000 --clear-groups sha256sum <"$MNT/data/v2/labels.json" 2>&1 &&
               setpriv --reuid 1000 --regid 1000 --clear-groups cat "$MNT/data/v2/labels.json" | sha256sum)" \
            "$want_sum
$want_sum"
    fi
}

# Pids of processes running `... mount $MNT ... --foreground` (the daemon of our mount point).
daemon_pids() {
    local f args
    for f in /proc/[0-9]*/cmdline; do
        args="$({ tr '\0' '\n' <"$f"; } 2>/dev/null)" || continue
        if grep -qxF -- "$MNT" <<<"$args" && grep -qx -- mount <<<"$args" && grep -qx -- --foreground <<<"$args"; then
            f="${f#/proc/}"
            echo "${f%/cmdline}"
        fi
    done
}

# wait_unmounted HOW: the mount is gone and its daemon has exited.
wait_unmounted() {
    local _ pids
    is_mounted "$MNT" && die "$1: $MNT is still mounted"
    for _ in $(seq 1 100); do
        pids="$(daemon_pids)"
        [ -z "$pids" ] && { echo "ok: $1: unmounted, daemon exited"; return 0; }
        sleep 0.1
    done
    die "$1: the daemon (pid $pids) is still running 10 s after the unmount"
}

# --- 1. the helper, called the way mount(8) calls it, with a typical fstab option string
show env ASSETFS_BIN="$ASSETFS" "$HELPER" "$STORE" "$MNT" -n -o rw,allow_other,_netdev,nofail,noauto,x-systemd.automount,defaults,noatime
expect_mounted "helper" allow_other
show umount "$MNT"
wait_unmounted "helper"
# The source as /proc/mounts shows it (assetfs:STORE) works too; without allow_other, other uids are refused.
ASSETFS_BIN="$ASSETFS" "$HELPER" "assetfs:$STORE" "$MNT"
expect_mounted "helper, assetfs:STORE"
if setpriv --reuid 1000 --regid 1000 --clear-groups cat "$MNT/data/v2/labels.json" >/dev/null 2>&1; then
    die "uid 1000 read a mount without allow_other"
fi
echo "ok: without allow_other uid 1000 is refused"
umount "$MNT"
wait_unmounted "helper, assetfs:STORE"
set +e
bad="$(ASSETFS_BIN="$ASSETFS" "$HELPER" "$STORE" "$MNT" -o allow_other,bogus 2>&1)"
status=$?
set -e
check "an unknown option is refused (exit 1)" "$status: $bad" \
    "1: mount.fuse.assetfs: unknown option 'bogus' (assetfs takes allow_other, ro, cache_size=SIZE, log_level=LEVEL)"
ASSETFS_BIN="$ASSETFS" "$HELPER" "$STORE" "$MNT" -f -o allow_other,cache_size=64M
is_mounted "$MNT" && die "-f (fake) mounted something"
echo "ok: -f checks the arguments and mounts nothing"

# --- 2. mount -t fuse.assetfs and fstab, with the helper installed as /sbin/mount.fuse.assetfs
SBIN_HELPER=/sbin/mount.fuse.assetfs
exec 9>/run/lock/assetfs-example-mount-helper.lock  # one example at a time may own /sbin/mount.fuse.assetfs
flock -w 120 9 || die "another run holds /run/lock/assetfs-example-mount-helper.lock"
if [ -e "$SBIN_HELPER" ]; then
    cp -a "$SBIN_HELPER" "$WORK/mount.fuse.assetfs.saved"
    CLEANUP_HOOKS+=("cp -a '$WORK/mount.fuse.assetfs.saved' '$SBIN_HELPER'")
    echo "note: $SBIN_HELPER exists; it is put back at the end"
else
    CLEANUP_HOOKS+=("rm -f '$SBIN_HELPER'")
fi
install -m 755 "$HELPER" "$SBIN_HELPER"
export ASSETFS_BIN="$ASSETFS"  # the installed helper would find /usr/local/bin/assetfs; use the binary under test

show mount -t fuse.assetfs "$STORE" "$MNT" -o allow_other
expect_mounted "mount -t fuse.assetfs" allow_other
show umount "$MNT"
wait_unmounted "mount -t fuse.assetfs"

sed -e "s|^/srv/assets-store  /assets |$STORE  $MNT |" "$HERE/fstab.example" >"$WORK/fstab"
show grep -v '^#' "$WORK/fstab"
grep -q "^$STORE  $MNT  fuse.assetfs  allow_other,_netdev  0 0$" "$WORK/fstab" || die "fstab.example has no line to test"
show mount --fstab "$WORK/fstab" "$MNT"
expect_mounted "fstab line" allow_other
show umount "$MNT"
wait_unmounted "fstab line"

# Put /sbin back as it was now rather than at exit.
if [ -e "$WORK/mount.fuse.assetfs.saved" ]; then cp -a "$WORK/mount.fuse.assetfs.saved" "$SBIN_HELPER"; else rm -f "$SBIN_HELPER"; fi
CLEANUP_HOOKS=()
exec 9>&-
unset ASSETFS_BIN

# --- 3. the systemd unit, run the way systemd runs a Type=simple service
UNIT="$REPO/mount-examples/systemd/assetfs.service"
unit_line() { # KEY: the unit's command line, with this example's binary, store and mount point
    sed -n "s/^$1=-\{0,1\}//p" "$UNIT" |
        sed -e "s|/usr/local/bin/assetfs|$ASSETFS|g" -e "s|/srv/assets-store|$STORE|g" -e "s|/assets\b|$MNT|g"
}
check "unit: Type" "$(sed -n 's/^Type=//p' "$UNIT")" "simple"
check "unit: Restart" "$(sed -n 's/^Restart=//p' "$UNIT")" "on-failure"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$WORK/units"
    sed -e "s|/usr/local/bin/assetfs|$ASSETFS|g" "$UNIT" >"$WORK/units/assetfs.service"
    show systemd-analyze verify "$WORK/units/assetfs.service"
    echo "ok: systemd-analyze verify"
else
    echo "note: systemd-analyze is not installed; the unit's syntax is not verified"
fi
read -r -a pre <<<"$(unit_line ExecStartPre)"
read -r -a start <<<"$(unit_line ExecStart)"
read -r -a stop <<<"$(unit_line ExecStop)"
check "unit: ExecStart runs in the foreground" "${start[*]:1:3}" "mount $MNT --foreground"

for how in ExecStop SIGTERM; do
    rmdir "$MNT"  # ExecStartPre creates it
    show "${pre[@]}"
    printf '\n$ %s &\n' "${start[*]}" >&2
    "${start[@]}" >"$WORK/service.log" 2>&1 &  # a simple command, so that $! is the daemon itself
    service=$!
    for _ in $(seq 1 150); do
        [ "$(stat -f -c %t "$MNT" 2>/dev/null)" = 65735546 ] && break
        kill -0 "$service" 2>/dev/null || die "the service exited before mounting: $(cat "$WORK/service.log")"
        sleep 0.1
    done
    expect_mounted "systemd unit" allow_other
    if [ "$how" = ExecStop ]; then show "${stop[@]}"; else show kill -TERM "$service"; fi
    set +e
    for _ in $(seq 1 100); do kill -0 "$service" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$service" 2>/dev/null && die "stop by $how: the service is still running after 10 s"
    wait "$service"
    status=$?
    set -e
    check "stop by $how: the service exits 0 (no restart by Restart=on-failure)" "$status" "0"
    wait_unmounted "stop by $how"
done

# --- 4. install.sh / uninstall.sh, staged into a destdir (the real thing writes /usr/local/bin, /sbin, /etc)
stage="$WORK/stage"
show bash "$REPO/scripts/install.sh" --binary "$ASSETFS" --destdir "$stage" --systemd
cmp -s "$ASSETFS" "$stage/usr/local/bin/assetfs" || die "install.sh: bin/assetfs differs from the binary"
check "install.sh: helper mode" "$(stat -c %a "$stage/sbin/mount.fuse.assetfs")" "755"
grep -qx 'installed_bin="/usr/local/bin/assetfs"  # written by install.sh' "$stage/sbin/mount.fuse.assetfs" ||
    die "install.sh: the helper does not know where the binary is"
grep -q '^complete .*-F _assetfs assetfs$' "$stage/etc/bash_completion.d/assetfs" || die "install.sh: no bash completion"
cmp -s "$UNIT" "$stage/etc/systemd/system/assetfs.service" || die "install.sh: the unit differs"
echo "ok: install.sh staged binary, helper, completion and unit"
show bash "$REPO/scripts/uninstall.sh" --destdir "$stage"
check "uninstall.sh removed every file" "$(find "$stage" -type f)" ""

example_done
