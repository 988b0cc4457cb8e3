#!/usr/bin/env python3
"""Writes a small, deterministic versioned ML data set: CSV shards, float32 .npy arrays and JSON labels.

usage: make_sample_data.py DIR VERSION
Version 1 creates DIR; each later version edits it in place (one shard changed, one array added,
labels updated), so consecutive versions share most of their bytes.
"""
import json
import os
import random
import sys

import numpy as np


def write_shard(path, rng, rows):
    with open(path, "w") as f:
        f.write("id,feature_a,feature_b,label\n")
        for i in range(rows):
            f.write(f"{i},{rng.random():.6f},{rng.randint(0, 1000)},{rng.choice(['cat', 'dog', 'bird'])}\n")


def main():
    root, version = sys.argv[1], int(sys.argv[2])
    rng = random.Random(1000 + version)
    os.makedirs(f"{root}/shards", exist_ok=True)
    os.makedirs(f"{root}/arrays", exist_ok=True)
    if version == 1:
        for s in range(4):
            write_shard(f"{root}/shards/{s:04d}.csv", random.Random(s), 20000)
        for a in range(2):
            np.save(f"{root}/arrays/emb{a:02d}.npy", np.random.default_rng(a).standard_normal((512, 256), dtype=np.float32))
    else:
        write_shard(f"{root}/shards/{version % 4:04d}.csv", rng, 20000 + version)
        np.save(f"{root}/arrays/emb{version:02d}.npy",
                np.random.default_rng(version).standard_normal((512, 256), dtype=np.float32))
    with open(f"{root}/labels.json", "w") as f:
        json.dump({"version": version, "classes": ["cat", "dog", "bird"][: 2 + min(version, 1)]}, f)


if __name__ == "__main__":
    main()
