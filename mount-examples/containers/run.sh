#!/usr/bin/env bash
# A pinned version inside a container: bubblewrap bind-mounts MNT/data/v3 read-only at /data, once as root
# and once as uid 1000 (unprivileged bwrap in a user namespace, started through setpriv). The mount uses
# -o allow_other, without which no other uid (and so no rootless container) can enter it, and -o ro: a host
# that only feeds containers needs no workspaces, and a versions-only mount opens files without asking the
# daemon.
#
# usage: run.sh [ASSETFS_BINARY [WORK_DIR]]
# Checks: the container sees the same bytes as the host (sha256 of every file, and the sha256 xattr), every
# write fails with EROFS, /data is a read-only mount; without allow_other uid 1000 is refused.
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
example_setup containers "$@"
command -v bwrap >/dev/null || die "bwrap is not installed (apt-get install bubblewrap)"
require_reachable_by_other_users

for v in 1 2 3; do sample_version "$v"; done
mount_assets -o allow_other -o ro
options="$(awk -v p="$MNT" '$5 == p { print $NF }' /proc/self/mountinfo)"
echo "mount options: $options"
mount_flags="$(awk -v p="$MNT" '$5 == p { print $6 }' /proc/self/mountinfo)"
case ",$mount_flags," in *,ro,*) ;; *) die "-o ro did not make a read-only mount: $mount_flags" ;; esac
[ ! -e "$MNT/data/workspaces" ] || die "a versions-only mount shows workspaces"
case ",$options," in *,allow_other,*) ;; *) die "no allow_other in the mount's options: $options" ;; esac
case ",$options," in *,default_permissions,*) ;; *) die "allow_other without default_permissions: $options" ;; esac

# The host's view, as `sha256sum` lines relative to the version directory.
host_sums="$(cd "$MNT/data/v3" && find . -type f | sort | xargs sha256sum)"
printf '%s\n' "$host_sums"

# A minimal container: the host's /usr read-only, its own /proc, /dev and /tmp, every namespace unshared,
# and the pinned version at /data.
container=(bwrap --ro-bind "$MNT/data/v3" /data
    --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin --symlink usr/sbin /sbin
    --proc /proc --dev /dev --tmpfs /tmp --unshare-all --die-with-parent --chdir /data)
cat > "$WORK/inside.sh" <<'SH'
echo "id: $(id -u):$(id -g)"
find . -type f | sort | xargs sha256sum
echo "xattr: $(getfattr --absolute-names --only-values -n user.assetfs.sha256 /data/labels.json)"
echo "mount: $(grep " /data " /proc/self/mountinfo | cut -d" " -f6)"
touch /data/new.txt 2>&1 || true
rm -f /data/labels.json 2>&1 || true
SH
chmod 644 "$WORK/inside.sh"
container+=(--ro-bind "$WORK/inside.sh" /inside.sh)

show "${container[@]}" sh /inside.sh > "$WORK/as_root.out"
cat "$WORK/as_root.out"
show setpriv --reuid 1000 --regid 1000 --clear-groups "${container[@]}" sh /inside.sh > "$WORK/as_user.out"
cat "$WORK/as_user.out"

labels_sum="$(sha256sum "$MNT/data/v3/labels.json" | cut -d' ' -f1)"
for who in root user; do
    out="$(cat "$WORK/as_$who.out")"
    check "$who: container id" "$(grep '^id: ' <<<"$out")" "id: $([ "$who" = root ] && echo 0:0 || echo 1000:1000)"
    check "$who: same bytes as the host (sha256 of every file)" "$(grep '^[0-9a-f]\{64\}  ' <<<"$out")" "$host_sums"
    check "$who: sha256 xattr inside the container" "$(grep '^xattr: ' <<<"$out")" "xattr: $labels_sum"
    case "$(grep '^mount: ' <<<"$out")" in "mount: ro,"* | "mount: ro") ;; *) die "$who: /data is not a read-only mount: $(grep '^mount: ' <<<"$out")" ;; esac
    echo "ok: $who: /data is mounted ro"
    check "$who: creating a file fails" "$(grep '^touch: ' <<<"$out")" "touch: cannot touch '/data/new.txt': Read-only file system"
    check "$who: deleting a file fails" "$(grep '^rm: ' <<<"$out")" "rm: cannot remove '/data/labels.json': Read-only file system"
done
[ -f "$MNT/data/v3/labels.json" ] && [ ! -e "$MNT/data/v3/new.txt" ] || die "the version changed"

# Without allow_other, the kernel lets no other uid into a FUSE mount, even through a bind mount.
unmount_assets
mount_assets
set +e
denied="$(show setpriv --reuid 1000 --regid 1000 --clear-groups "${container[@]}" true 2>&1)"
status=$?
set -e
echo "$denied"
[ "$status" != 0 ] || die "uid 1000 entered a mount without allow_other"
case "$denied" in *"Permission denied"*) echo "ok: without allow_other uid 1000 is refused" ;; *) die "unexpected refusal: $denied" ;; esac

unmount_assets
example_done
