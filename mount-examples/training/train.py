#!/usr/bin/env python3
"""An ordinary training-style job. It knows nothing about assetfs: give it any directory laid out as

    DIR/shards/*.csv     rows: id,feature_a,feature_b,label
    DIR/arrays/*.npy     float32 embedding tables (opened with numpy mmap, never copied whole)

and it fits a small logistic-regression model ("is the label cat?") with full-batch gradient descent. Each
epoch, a pool of worker processes computes the gradient of one shard each; the parent adds them up in shard
order, so the result depends only on the bytes under DIR (not on the number of workers or on timing).

usage: train.py --data DIR [--workers N] [--epochs E] [--lr LR] [--out metrics.json]

Prints one line per epoch and a final `result:` line; --out writes the same numbers as JSON.
"""
import argparse
import csv
import glob
import hashlib
import json
import multiprocessing
import os
import sys

import numpy as np

# Per worker process: parsed shards and mmapped embedding tables, loaded on first use.
_shards = {}
_tables = None
_config = {}


def _init_worker(data_dir):
    _config["data"] = data_dir


def _embedding_tables():
    global _tables
    if _tables is None:
        paths = sorted(glob.glob(os.path.join(_config["data"], "arrays", "*.npy")))
        # mmap: every worker maps the same files; the pages come from the page cache, read once.
        _tables = [np.load(p, mmap_mode="r") for p in paths]
    return _tables


def _features(path):
    """Design matrix and targets of one shard: [1, feature_a, feature_b/1000, embedding score]."""
    if path not in _shards:
        ids, a, b, y = [], [], [], []
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                ids.append(int(row["id"]))
                a.append(float(row["feature_a"]))
                b.append(int(row["feature_b"]) / 1000.0)
                y.append(1.0 if row["label"] == "cat" else 0.0)
        ids = np.asarray(ids)
        score = np.zeros(len(ids))
        tables = _embedding_tables()
        direction = np.random.default_rng(7).standard_normal(256)
        for table in tables:
            rows = np.asarray(table[ids % table.shape[0]], dtype=np.float64)
            score += rows @ direction / 16.0
        if tables:
            score /= len(tables)
        x = np.column_stack([np.ones(len(ids)), np.asarray(a), np.asarray(b), score])
        _shards[path] = (x, np.asarray(y))
    return _shards[path]


def shard_gradient(task):
    """(gradient, loss sum, rows) of one shard at weights w: runs in a worker process."""
    path, w = task
    x, y = _features(path)
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    eps = 1e-12
    loss = -np.sum(y * np.log(p + eps) + (1.0 - y) * np.log(1.0 - p + eps))
    return x.T @ (p - y), float(loss), len(y)


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data set directory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--out", help="write the metrics as JSON here")
    args = parser.parse_args()

    shards = sorted(glob.glob(os.path.join(args.data, "shards", "*.csv")))
    arrays = sorted(glob.glob(os.path.join(args.data, "arrays", "*.npy")))
    if not shards:
        sys.exit(f"train.py: no shards/*.csv under {args.data}")

    w = np.zeros(4)
    history = []
    with multiprocessing.Pool(args.workers, initializer=_init_worker, initargs=(args.data,)) as pool:
        # A content digest of everything the job read, hashed by the workers too.
        files = shards + arrays
        digests = pool.map(file_digest, files)
        data_digest = hashlib.sha256(
            "".join(f"{os.path.relpath(p, args.data)} {d}\n" for p, d in zip(files, digests)).encode()).hexdigest()
        rows = 0
        for epoch in range(1, args.epochs + 1):
            parts = pool.map(shard_gradient, [(p, w) for p in shards])
            grad = sum((g for g, _, _ in parts), np.zeros(4))  # fixed order: deterministic
            rows = sum(n for _, _, n in parts)
            loss = sum(l for _, l, _ in parts) / rows
            history.append(loss)
            w = w - args.lr * grad / rows
            print(f"epoch {epoch}  loss {loss:.10f}")

    metrics = {
        "shards": len(shards),
        "arrays": len(arrays),
        "rows": rows,
        "loss": round(history[-1], 12),
        "weights": [round(float(v), 12) for v in w],
        "data_sha256": data_digest,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
    print(f"result: loss={metrics['loss']:.12f} rows={rows} arrays={len(arrays)} data_sha256={data_digest[:16]}")


if __name__ == "__main__":
    main()
