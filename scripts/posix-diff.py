#!/usr/bin/env python3
"""Differential POSIX tester: the same seeded random system calls, made as root and as two other users, in
two directories that start out alike (a local one and an assetfs workspace). After every call it compares
the call's answer (return value or errno) and lstat of the paths it touched (type, permission bits, owner,
group, link count, size of non-directories, device number, extended attribute names); it stops at the first difference and prints the
seed and the step. Run as root; the second directory must be on a mount made with -o allow_other.

    python3 scripts/posix-diff.py --seed 7 --ops 2000 LOCAL_DIR WORKSPACE_DIR
    python3 scripts/posix-diff.py --times --seed 7 LOCAL_DIR WORKSPACE_DIR     # also which times each call changed
    python3 scripts/posix-diff.py --seconds 1800 LOCAL_DIR WORKSPACE_DIR     # one seed after another

Each seed works in a fresh subdirectory `s<seed>` (mode 0777) of both directories. Exit status: 0 no
difference, 1 a difference (printed), 2 usage.
"""
import argparse, ctypes, errno, os, random, socket, stat, sys, time

LIBC = ctypes.CDLL(None, use_errno=True)

USERS = [(0, 0), (1000, 1000), (1001, 1001)]
POOL = ["a", "b", "c", "d1", "d1/a", "d1/b", "d1/d2", "d1/d2/a", "d2", "d2/a", "d2/b"]
MODES = [0o644, 0o600, 0o755, 0o777, 0o640, 0o2755, 0o4755, 0o1777, 0o2775, 0o000, 0o7777, 0o3710]


def describe(path):
    try:
        s = os.lstat(path)
    except OSError as e:
        return errno.errorcode[e.errno]
    kind = "?"
    for test, letter in [(stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"), (stat.S_ISFIFO, "p"),
                         (stat.S_ISSOCK, "s"), (stat.S_ISCHR, "c"), (stat.S_ISBLK, "b")]:
        if test(s.st_mode):
            kind = letter
    out = "%s mode=%o uid=%d gid=%d nlink=%d" % (kind, stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid, s.st_nlink)
    if kind != "d":
        out += " size=%d" % s.st_size
    if kind in "cb":
        out += " rdev=%d:%d" % (os.major(s.st_rdev), os.minor(s.st_rdev))
    try:
        names = os.listxattr(path, follow_symlinks=False)
        if names:
            out += " xattrs=" + ",".join(sorted(names))
    except OSError as e:
        out += " xattrs=" + errno.errorcode[e.errno]
    return out


def generate(rng):
    """One call, chosen without looking at either tree, so both get the same sequence."""
    p, q = rng.choice(POOL), rng.choice(POOL)
    mode = rng.choice(MODES)
    kind = rng.choice(["create", "create", "open", "write", "write", "truncate", "mkdir", "mkdir", "rmdir", "mkfifo",
                       "mknod", "socket", "symlink", "link", "unlink", "unlink", "rename", "rename", "exchange", "chmod", "chown",
                       "utime", "setxattr", "read", "append", "getxattr", "listxattr", "removexattr", "readlink"])
    if kind == "create":
        return (kind, p, mode, rng.choice([0, os.O_EXCL, os.O_TRUNC]), rng.randint(0, 9000))
    if kind == "open":
        flags = rng.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_TRUNC,
                            os.O_RDONLY | os.O_DIRECTORY, os.O_RDWR | os.O_CREAT | os.O_EXCL])
        return (kind, p, flags)
    if kind == "write":
        return (kind, p, rng.choice([0, 100, 4095, 4096, 70000]), rng.randint(1, 6000))
    if kind == "truncate":
        return (kind, p, rng.choice([0, 10, 4096, 100000]))
    if kind in ("mkdir", "mkfifo", "chmod"):
        return (kind, p, mode)
    if kind == "mknod":
        return (kind, p, rng.choice([stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG]), mode & 0o777,
                rng.choice([(1, 3), (7, 200), (0, 0)]))
    if kind == "symlink":
        # Every target resolves inside the seed directory: a ".." out of it, or an absolute one, would reach
        # the same file from both trees (calls through the link in one tree would show in the other).
        return (kind, rng.choice(["a", "d2/../a", "d1", "no/such/dir", "d1/d2/a"]), p)
    if kind in ("link", "rename", "exchange"):
        return (kind, p, q)
    if kind == "chown":
        return (kind, p, rng.choice([-1, 0, 1000, 1001]), rng.choice([-1, 0, 1000, 1001, 1234]))
    if kind == "utime":
        return (kind, p, rng.choice([None, (1, 2), (-5, 2_000_000_000)]))
    if kind == "setxattr":
        return (kind, p, rng.choice(["user.k", "user.other", "trusted.k"]), rng.choice([b"", b"v", b"x" * 300]),
                rng.choice([0, os.XATTR_CREATE, os.XATTR_REPLACE]))
    if kind in ("getxattr", "removexattr"):
        return (kind, p, rng.choice(["user.k", "user.other", "trusted.k", "user.missing"]))
    if kind == "append":
        return (kind, p, rng.randint(1, 5000))
    return (kind, p)  # rmdir, unlink, socket, read


def apply(root, call, data):
    kind, path = call[0], os.path.join(root, call[1])
    if kind in ("create", "open", "write", "read", "append"):
        # Device nodes are inert on the workspace's mount (nodev, as every assetfs mount): opening one is not
        # compared. Every open is non-blocking, so a FIFO without a peer answers at once (ENXIO) in both.
        try:
            if stat.S_ISCHR(os.stat(path).st_mode) or stat.S_ISBLK(os.stat(path).st_mode):
                return "device"
        except OSError:
            pass
    if kind == "create":
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NONBLOCK | call[3], call[2])
        try:
            return os.write(fd, data[:call[4]])
        finally:
            os.close(fd)
    if kind == "open":
        os.close(os.open(path, call[2] | os.O_NONBLOCK, 0o644))
        return 0
    if kind == "write":
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            return os.pwrite(fd, data[:call[3]], call[2])
        finally:
            os.close(fd)
    if kind == "read":
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return len(os.read(fd, 1 << 20))
        finally:
            os.close(fd)
    if kind == "truncate":
        os.truncate(path, call[2])
    elif kind == "mkdir":
        os.mkdir(path, call[2])
    elif kind == "rmdir":
        os.rmdir(path)
    elif kind == "mkfifo":
        os.mkfifo(path, call[2])
    elif kind == "mknod":
        os.mknod(path, call[2] | call[3], os.makedev(*call[4]))
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(path)
        finally:
            s.close()
    elif kind == "symlink":
        os.symlink(call[1], os.path.join(root, call[2]))
    elif kind == "link":
        os.link(path, os.path.join(root, call[2]))
    elif kind == "unlink":
        os.unlink(path)
    elif kind == "rename":
        os.rename(path, os.path.join(root, call[2]))
    elif kind == "exchange":  # renameat2(RENAME_EXCHANGE), which Python's os module does not offer
        if LIBC.renameat2(-100, path.encode(), -100, os.path.join(root, call[2]).encode(), 2) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    elif kind == "chmod":
        os.chmod(path, call[2])
    elif kind == "chown":
        os.chown(path, call[2], call[3])
    elif kind == "utime":
        os.utime(path, call[2], follow_symlinks=False) if call[2] else os.utime(path)
    elif kind == "setxattr":
        os.setxattr(path, call[2], call[3], call[4])
    elif kind == "getxattr":
        return os.getxattr(path, call[2], follow_symlinks=False).hex()[:40]
    elif kind == "listxattr":
        return ",".join(sorted(os.listxattr(path, follow_symlinks=False)))
    elif kind == "removexattr":
        os.removexattr(path, call[2])
    elif kind == "readlink":
        return os.readlink(path)
    elif kind == "append":
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        try:
            return os.write(fd, data[:call[2]])
        finally:
            os.close(fd)
    return 0


def answer(root, call, user, data):
    uid, gid = user
    os.setegid(gid)
    os.seteuid(uid)
    try:
        return str(apply(root, call, data))
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        os.seteuid(0)
        os.setegid(0)


def touched(call):
    names = [c for c in call[1:] if isinstance(c, str) and c in POOL]
    out = set()
    for n in names:
        out.add(n)
        if "/" in n:
            out.add(n.rsplit("/", 1)[0])
    return sorted(out)


def stamps(path):
    try:
        s = os.lstat(path)
        # A directory's atime is left out: ext4 sets it when the directory is read (relatime), and a FUSE file
        # system cannot show that change while the kernel holds the directory's attributes.
        atime = None if stat.S_ISDIR(s.st_mode) else s.st_atime_ns
        return (s.st_ino, atime, s.st_mtime_ns, s.st_ctime_ns)
    except OSError:
        return None


def changed(before, after):
    """Which of atime, mtime and ctime a call changed ("amc" letters, "-" for none), or that the file came or went."""
    if before is None or after is None:
        return "new" if before is None and after is not None else ("gone" if after is None and before is not None else "none")
    if before[0] != after[0]:
        return "replaced"  # Another inode has the name now: its times are not comparable with the old one's.
    return "".join(l for l, x, y in zip("amc", before[1:], after[1:]) if x != y) or "-"


def run_seed(seed, ops, roots, times=False, every=25):
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(9000))
    dirs = []
    for root in roots:
        d = os.path.join(root, "s%d" % seed)
        if os.path.lexists(d):
            sys.exit("%s exists: give each run fresh directories, or another --seed" % d)
        os.mkdir(d)
        os.chmod(d, 0o777)
        dirs.append(d)
    for step in range(1, ops + 1):
        call = generate(rng)
        user = rng.choice(USERS)
        names = touched(call)
        if times:
            # ext4 takes times from a clock that ticks every few ms: wait for a tick, so that a time a call
            # sets differs from the one before it in both trees.
            befores = [[stamps(os.path.join(d, n)) for n in names] for d in dirs]
            time.sleep(0.012)
        answers = [answer(d, call, user, data) for d in dirs]
        states = [[(n, describe(os.path.join(d, n))) for n in names] for d in dirs]
        if times:
            for i, d in enumerate(dirs):
                flags = [changed(b, stamps(os.path.join(d, n))) for n, b in zip(names, befores[i])]
                if call[0] == "read" and answers[i] == "0":
                    # A read at the end of a file never reaches a FUSE file system (the kernel answers it), so
                    # it cannot set atime there; ext4 does. Not compared.
                    flags = [f.replace("a", "") or "-" for f in flags]
                states[i] += [(n, "times " + f) for n, f in zip(names, flags)]
        if answers[0] != answers[1] or states[0] != states[1]:
            print("seed %d step %d: %s as uid %d" % (seed, step, call, user[0]))
            print("  local:     %s; %s" % (answers[0], states[0]))
            print("  workspace: %s; %s" % (answers[1], states[1]))
            return False
        if step % every == 0 or step == ops:
            # Every name in both trees, with what lstat says: catches entries left behind or lost elsewhere.
            trees = [tree(d) for d in dirs]
            if trees[0] != trees[1]:
                print("seed %d after step %d (%s as uid %d): the trees differ" % (seed, step, call, user[0]))
                for line in sorted(set(trees[0]) ^ set(trees[1]))[:10]:
                    print("  %s %s" % ("local only:    " if line in trees[0] else "workspace only:", line))
                return False
    return True


def tree(top):
    out = []
    for directory, subdirs, files in os.walk(top):
        for name in sorted(subdirs + files):
            path = os.path.join(directory, name)
            out.append("%s: %s" % (os.path.relpath(path, top), describe(path)))
    return sorted(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=0, help="run seed after seed (from --seed or 1) this long")
    parser.add_argument("--every", type=int, default=25, help="compare the whole trees every N calls (default 25)")
    parser.add_argument("--times", action="store_true",
                        help="also compare which of atime, mtime and ctime each call changed on the paths it touched")
    parser.add_argument("local")
    parser.add_argument("workspace")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (calls are made as root and as uids 1000 and 1001)")
    os.setgroups([])
    os.umask(0o022)
    seed = args.seed if args.seed is not None else 1
    deadline = time.monotonic() + args.seconds
    seeds = ops = 0
    while True:
        if not run_seed(seed, args.ops, [args.local, args.workspace], times=args.times, every=max(1, args.every)):
            sys.exit(1)
        seeds += 1
        ops += args.ops
        if args.seconds <= 0 or time.monotonic() >= deadline:
            break
        seed += 1
    print("no difference: %d seeds (from %d), %d calls" % (seeds, seed - seeds + 1, ops))


if __name__ == "__main__":
    main()
