"""Baselines for Benchmarks/run.sh, measured in the same run as GradSketch.

  python3 baselines.py make ROWS.npy N K          random float32 rows
  python3 baselines.py h5py-append ROWS.npy DIR REPEAT   numpy load + h5py write of the same bytes
  python3 baselines.py numpy-scan ROWS.npy REPEAT        numpy sum of the memory-mapped .npy
  python3 baselines.py offset SEGMENT.h5                 file offset of the rows dataset
"""
import json, os, sys, time
import h5py, numpy as np


def now():
    return time.perf_counter()


command = sys.argv[1]
if command == "make":
    path, n, k = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    for start in range(0, n, 65536):
        end = min(n, start + 65536)
        out[start:end] = rng.standard_normal((end - start, k), dtype=np.float32)
    out.flush()
elif command == "h5py-append":
    rows_path, directory, repeat = sys.argv[2], sys.argv[3], int(sys.argv[4])
    for run in range(repeat):
        for durable in (False, True):
            path = f"{directory}/h5py-{run}-{int(durable)}.h5"
            if os.path.exists(path):
                os.remove(path)
            os.sync()  # every run starts with no dirty pages left over from the one before
            start = now()
            rows = np.load(rows_path, mmap_mode="r")
            with h5py.File(path, "w") as f:
                f.create_dataset("rows", data=rows)  # contiguous, as GradSketch writes
            if durable:  # the same durability GradSketch gives: fsync the file and directory
                fd = os.open(path, os.O_RDONLY); os.fsync(fd); os.close(fd)
                fd = os.open(directory, os.O_RDONLY); os.fsync(fd); os.close(fd)
            seconds = now() - start
            print(json.dumps({"what": "h5py-append" + ("-fsync" if durable else ""), "run": run,
                              "seconds": seconds, "bytes": rows.nbytes}))
            os.remove(path)  # keep the benchmark's footprint at a few copies of the data
elif command == "numpy-scan":
    rows_path, repeat = sys.argv[2], int(sys.argv[3])
    rows = np.load(rows_path, mmap_mode="r")
    rows.sum(dtype=np.float64)  # fault the pages in
    best = 1e30
    for _ in range(repeat):
        start = now()
        total = float(rows.sum(dtype=np.float32))
        best = min(best, now() - start)
    print(json.dumps({"what": "numpy-scan", "seconds": best, "bytes": rows.nbytes, "sum": total}))
elif command == "queries":
    rows_path, out, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
    d = np.load(rows_path, mmap_mode="r").shape[1]
    np.save(out, np.random.default_rng(1).standard_normal((count, d)).astype(np.float32))
elif command == "faiss-flat":
    import faiss
    rows_path, queries_path = sys.argv[2], sys.argv[3]
    rows, queries = np.load(rows_path), np.load(queries_path)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        index.search(queries[:1], 10)
        start = now()
        first = None
        for q in range(len(queries)):  # one query at a time, as an interactive user asks
            _, ids = index.search(queries[q:q + 1], 10)
            first = first if first is not None else ids[0]
        seconds = now() - start
        print(json.dumps({"what": f"search-faiss-flat-{threads}t", "qps": len(queries) / seconds,
                          "gbps": rows.nbytes * len(queries) / seconds / 1e9, "dtype": "float32",
                          "first_top10": ",".join(str(i) for i in first)}))
elif command == "offset":
    with h5py.File(sys.argv[2], "r") as f:
        print(f["rows"].id.get_offset(), f["rows"].size)
