#!/usr/bin/env python3
"""Gives every file of a generated data set a fixed, version-derived mtime, so the examples are deterministic.

usage: stamp_mtimes.py DIR VERSION MANIFEST

A file whose content is new or changed since the previous call gets midnight UTC of 2024-01-(1+VERSION); an
unchanged file gets back the mtime it had (the generator rewrites some files with identical bytes). So
`ls -l`, `find -newer` and the shared inode numbers of unchanged files (assetfs derives them from path,
content, mode, owner and mtime) come out the same on every run. Directories get the version's stamp.
"""
import hashlib
import json
import os
import sys


def main():
    root, version, manifest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    old = {}
    if os.path.exists(manifest):
        with open(manifest) as f:
            old = json.load(f)
    stamp = 1704067200 + version * 86400  # 2024-01-01T00:00:00Z + VERSION days
    new = {}
    directories = []
    for dirpath, dirnames, filenames in os.walk(root):
        directories.append(dirpath)
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            when = old[rel][1] if rel in old and old[rel][0] == digest else stamp
            os.utime(path, ns=(when * 10**9, when * 10**9))
            new[rel] = [digest, when]
    for d in sorted(directories, reverse=True):
        os.utime(d, ns=(stamp * 10**9, stamp * 10**9))
    with open(manifest, "w") as f:
        json.dump(new, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
