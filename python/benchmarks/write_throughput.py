"""Write throughput from Python: append_session vs numpy.save of the same bytes.

Rows of float16 (width --k) are generated in memory first; then
  - store: Store.create, one append_session, append in batches of --batch-mb, commit
    (the commit fsyncs the store's files, so it is included);
  - numpy: numpy.save of the same array to a file in the same directory, then fsync.
Both write to the same filesystem and both are fsync'd. Each is run --repeat times; the best
time of each is reported (page-cache noise from the other helpers on this machine).

    python3 python/benchmarks/write_throughput.py --mb 512

Prints MB/s of both and their ratio (target >= 0.9), and a time breakdown of the store side
(append calls vs commit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package first
import gradsketch as gs  # noqa: E402


def write_store(directory: Path, rows: np.ndarray, batch_rows: int) -> tuple[float, float, float]:
    """Seconds for (whole write, append calls, commit), store creation excluded."""
    path = directory / "store"
    shutil.rmtree(path, ignore_errors=True)
    with gs.Store.create(path) as store:
        start = time.perf_counter()
        session = store.append_session("rows", dtype="float16")
        for begin in range(0, len(rows), batch_rows):
            session.append(rows[begin:begin + batch_rows])
        appended = time.perf_counter()
        session.commit()
        session.close()
        done = time.perf_counter()
    return done - start, appended - start, done - appended


def write_numpy(directory: Path, rows: np.ndarray) -> float:
    path = directory / "rows.npy"
    start = time.perf_counter()
    with open(path, "wb") as file:
        np.save(file, rows)
        file.flush()
        os.fsync(file.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=512, help="total MB of rows (default 512)")
    parser.add_argument("--batch-mb", type=float, default=64, help="MB per append call (default 64)")
    parser.add_argument("--k", type=int, default=1024, help="row width (default 1024)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="directory to write in (default: a temp dir)")
    args = parser.parse_args()

    row_bytes = args.k * 2
    count = int(args.mb * 1e6 // row_bytes)
    batch_rows = max(1, int(args.batch_mb * 1e6 // row_bytes))
    rows = np.random.default_rng(0).standard_normal((count, args.k), dtype=np.float32).astype(np.float16)
    megabytes = rows.nbytes / 1e6
    directory = Path(tempfile.mkdtemp(prefix="gs-throughput-", dir=args.dir))
    try:
        store_runs = [write_store(directory, rows, batch_rows) for _ in range(args.repeat)]
        numpy_runs = [write_numpy(directory, rows) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    store_total, store_append, store_commit = min(store_runs)
    numpy_total = min(numpy_runs)
    print(f"rows: {count} x {args.k} float16 = {megabytes:.0f} MB, batches of {batch_rows} rows, both fsync'd")
    print(f"store (append_session + commit): {megabytes / store_total:8.1f} MB/s  ({store_total:.2f} s: "
          f"append {store_append:.2f} s, commit {store_commit:.2f} s)")
    print(f"numpy.save + fsync:              {megabytes / numpy_total:8.1f} MB/s  ({numpy_total:.2f} s)")
    print(f"ratio store/numpy: {numpy_total / store_total:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
