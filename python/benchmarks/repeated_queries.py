"""Repeated queries on one kept-open snapshot vs a new snapshot per query.

    python3 python/benchmarks/repeated_queries.py --rows 20000 --k 256 --queries 1000

Writes a float16 set to a temporary store, then times --queries top-10 queries on one
snapshot, and --reopen-queries queries each opening (and closing) a snapshot first. Prints
the mean latency of both.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package first
import gradsketch as gs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--reopen-queries", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((args.rows, args.k), dtype=np.float32).astype(np.float16)
    queries = rng.standard_normal((args.queries, args.k), dtype=np.float32)
    directory = Path(tempfile.mkdtemp(prefix="gs-queries-"))
    try:
        with gs.Store.create(directory / "store") as store:
            with store.append_session("train") as session:
                session.append(rows, ids=[f"r{i}" for i in range(args.rows)])
            with store.snapshot() as snap:
                snap.query("train", queries[0])  # warm the page cache and the code paths
                start = time.perf_counter()
                for query in queries:
                    snap.query("train", query, k=10)
                kept = (time.perf_counter() - start) / len(queries)
            start = time.perf_counter()
            for query in queries[: args.reopen_queries]:
                with store.snapshot() as snap:
                    snap.query("train", query, k=10)
            reopened = (time.perf_counter() - start) / min(args.reopen_queries, len(queries))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"set: {args.rows} x {args.k} float16; top-10 inner-product queries")
    print(f"one kept-open snapshot:   {kept * 1e3:8.3f} ms/query over {len(queries)} queries")
    print(f"new snapshot per query:   {reopened * 1e3:8.3f} ms/query over {min(args.reopen_queries, len(queries))} queries")
    print(f"ratio: {reopened / kept:.1f}x")


if __name__ == "__main__":
    main()
