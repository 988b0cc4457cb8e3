# Shared by the shell benchmarks (source it after `cd` to the repository root).

# bench_binary: sets $bin to $ASSETFS_BIN, or to a release build made now.
bench_binary() {
    if [ -n "${ASSETFS_BIN:-}" ]; then
        bin="$ASSETFS_BIN"
    else
        swift build -c release --product assetfs >/dev/null
        bin="$(swift build -c release --show-bin-path)/assetfs"
    fi
}

# unmount_on_exit MNT: whatever ends the script, MNT is not left mounted (lazily, as the last resort).
unmount_on_exit() {
    bench_mountpoint="$1"
    trap 'if grep -qs " $bench_mountpoint " /proc/mounts; then "$bin" umount "$bench_mountpoint" 2>/dev/null || fusermount3 -u -z "$bench_mountpoint" || true; fi' EXIT
}
