#!/usr/bin/env python3
"""Helpers for Benchmarks/scale.sh (issue 16 part 4): data, builds and searches of every system,
each step a separate process so that its peak RSS (/usr/bin/time -v in scale.sh) is its own.

  scale.py data WORK N K NQ EXTRA         rows (float16, unit norm) in chunks straight to .npy,
                                          EXTRA held-out rows for the 1 % update, NQ held-out
                                          queries, exact top-10 truth (cached: meta.json)
  scale.py faiss-build WORK KIND OUT      KIND ivfpq | hnsw; writes the index to OUT, prints JSON
  scale.py faiss-search WORK KIND FILE    sweeps the search knob upward until recall@10 >= 0.95
  scale.py lance-write WORK DIR           the rows as a Lance dataset (float16 vectors, int64 id)
  scale.py lance-build WORK DIR KIND      KIND ivf_pq | ivf_hnsw_sq
  scale.py lance-search WORK DIR KIND
  scale.py gs-search WORK STORE INDEX SYSTEM  GradSketch through the Python binding (Snapshot.query)
  scale.py table RESULTS.jsonl...         markdown table, best single-thread QPS at recall@10 >= 0.95

Metric: cosine. Rows are normalised before they are rounded to float16, queries are normalised,
and every system searches by inner product (Lance by its "cosine" metric, the same ranking).
Ground truth: exact top-10 by float32 inner product over the stored float16 values.
Searches run one query at a time; scale.sh pins the search processes to one CPU (taskset) and sets
every thread count to 1. Every record is one JSON object per line on stdout.
"""
import json, os, resource, sys, time
import numpy as np

K_TOP = 10
TARGET = 0.95
CHUNK = 1 << 18


def emit(**fields):
    if "SCALE_N" in os.environ:  # scale.sh: which size this record belongs to
        fields.setdefault("n", int(float(os.environ["SCALE_N"])))
    print(json.dumps(fields, sort_keys=True), flush=True)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- data --------------------------------------------------------------------------------------

def generator(k, seed):
    """Gradient-sketch-like rows: a mixture of 1024 clusters (sizes Zipf-like), each spread along
    its own 12-dimensional subspace (real gradient sketches have a low intrinsic dimension; an
    isotropic 128-d blob has no neighbour structure for any index to find), a shared low-rank
    component, a little isotropic noise, and log-normal (heavy-tailed) norms. The norms vanish
    once rows are normalised for cosine; they are kept so the generator serves a raw-IP run."""
    rng = np.random.default_rng(seed)
    clusters, local = 1024, 12
    centres = rng.standard_normal((clusters, k), dtype=np.float32) / np.float32(np.sqrt(k))
    bases = rng.standard_normal((clusters, local, k), dtype=np.float32) / np.float32(np.sqrt(k))
    spread = rng.uniform(0.3, 0.6, clusters).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    weights /= weights.sum()
    shared = rng.standard_normal((8, k), dtype=np.float32) / np.float32(np.sqrt(k))

    def block(n, stream):
        r = np.random.default_rng([seed, stream])
        out = np.empty((n, k), np.float32)
        for s in range(0, n, 16384):  # bounded temporaries: [16384, 12, k] floats at most
            e = min(n, s + 16384)
            members = r.choice(clusters, e - s, p=weights)
            z = r.standard_normal((e - s, local), dtype=np.float32) * (spread[members, None] / np.float32(np.sqrt(local)))
            x = centres[members] + np.einsum("nl,nlk->nk", z, bases[members])
            x += r.standard_normal((e - s, k), dtype=np.float32) * np.float32(0.05 / np.sqrt(k))
            x += r.standard_normal((e - s, 8), dtype=np.float32) @ shared * np.float32(0.15 / np.sqrt(8))
            x *= r.lognormal(0.0, 0.8, (e - s, 1)).astype(np.float32)
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out
    return block


def write_rows(path, n, k, block, stream0):
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, k))
    for i, start in enumerate(range(0, n, CHUNK)):
        end = min(n, start + CHUNK)
        rows[start:end] = block(end - start, stream0 + i).astype(np.float16)
    rows.flush()
    del rows


def data(work, n, k, nq, extra):
    meta = dict(n=n, k=k, nq=nq, extra=extra, seed=16, generator=6)
    meta_path = os.path.join(work, "meta.json")
    if os.path.exists(meta_path) and json.load(open(meta_path)) == meta:
        log(f"scale.py: data cached in {work}")
        emit(what="data", cached=True, **meta)
        return
    block = generator(k, 16)
    t = time.perf_counter()
    write_rows(os.path.join(work, "base.npy"), n, k, block, 0)
    write_rows(os.path.join(work, "extra.npy"), extra, k, block, 1 << 30)
    with open(os.path.join(work, "extra-ids.txt"), "w") as f:  # row indexes continue after the base rows
        f.write("".join(f"{n + i}\n" for i in range(extra)))
    queries = block(nq, 1 << 31)  # held out: a stream no stored row comes from
    queries = queries.astype(np.float16).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.save(os.path.join(work, "queries.npy"), queries)
    generate_s = time.perf_counter() - t
    t = time.perf_counter()
    rows = np.load(os.path.join(work, "base.npy"), mmap_mode="r")
    best_scores = np.full((nq, K_TOP), -np.inf, np.float32)
    best_ids = np.zeros((nq, K_TOP), np.int64)
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        scores = queries @ np.asarray(rows[start:end], np.float32).T
        top = np.argpartition(-scores, K_TOP, axis=1)[:, :K_TOP] if end - start > K_TOP else np.argsort(-scores, 1)[:, :K_TOP]
        cs = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], 1)
        ci = np.concatenate([best_ids, top + start], 1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, :K_TOP]
        best_scores, best_ids = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    np.save(os.path.join(work, "truth.npy"), best_ids)
    # How hard: the gap between the 10th and the 100th score of a few queries (relative).
    sample = queries[:50] @ np.asarray(rows[:min(n, 1 << 20)], np.float32).T
    s = -np.sort(-sample, axis=1)
    gap = float(np.median((s[:, 9] - s[:, 99]) / np.abs(s[:, 9])))
    json.dump(meta, open(meta_path, "w"))
    emit(what="data", cached=False, generate_s=generate_s, truth_s=time.perf_counter() - t,
         median_gap_10_100=gap, **meta)


def load(work):
    return (np.load(os.path.join(work, "base.npy"), mmap_mode="r"), np.load(os.path.join(work, "queries.npy")),
            np.load(os.path.join(work, "truth.npy")))


def recall(found, truth):
    return sum(len(set(map(int, a[:K_TOP])) & set(map(int, b[:K_TOP]))) for a, b in zip(found, truth)) / (K_TOP * len(truth))


def nlist_for(n):
    """The power of two nearest 4·√N (faiss wiki: 4√N … 16√N below 1M rows)."""
    target = 4 * np.sqrt(n)
    return int(2 ** round(np.log2(target)))


def sweep(system, params, run, truth):
    """Runs `run(param)` -> (ids, seconds) for params in increasing cost until recall >= TARGET.
    Each point: best of two passes (this shared VM varies run to run)."""
    for p in params:
        found, seconds = run(p)
        _, again = run(p)
        seconds = min(seconds, again)
        r = recall(found, truth)
        emit(what="search", system=system, param=p, recall=r, qps=len(truth) / seconds)
        log(f"  {system:<24} {str(p):<36} R@10 {r:.4f}  QPS {len(truth) / seconds:9.1f}")
        if r >= TARGET:
            return


# ---- FAISS -------------------------------------------------------------------------------------

def faiss_setup(threads):
    if "OPENBLAS_CORETYPE" not in os.environ:  # the wheel's OpenBLAS misdetects this CPU (ann.md §4.1)
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX" if " avx512bw" in open("/proc/cpuinfo").read() else "Haswell"
    import faiss
    faiss.omp_set_num_threads(threads)
    return faiss


def faiss_build(work, kind, out):
    faiss = faiss_setup(int(os.environ.get("BUILD_THREADS", "2")))
    rows, _, _ = load(work)
    n, k = rows.shape
    t = time.perf_counter()
    if kind == "ivfpq":
        nlist = nlist_for(n)
        m = k // 4
        # 4-bit fast-scan PQ with m = k/4 sub-quantizers (8-bit PQ training was minutes at 2e4 rows here), re-ranked from a float16 copy of the rows
        # (faiss's Refine(SQfp16): the same row bytes GradSketch re-ranks from).
        index = faiss.index_factory(k, f"IVF{nlist},PQ{m}x4fs,Refine(SQfp16)", faiss.METRIC_INNER_PRODUCT)
        train_n = min(n, max(32 * nlist, 32768))
        sample = np.asarray(rows[np.sort(np.random.default_rng(0).choice(n, train_n, replace=False))], np.float32)
        index.train(sample)
        del sample
        params = dict(factory=f"IVF{nlist},PQ{m}x4fs,Refine(SQfp16)", train_rows=train_n)
    else:
        index = faiss.IndexHNSWFlat(k, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(os.environ.get("HNSW_EFC", "100"))
        params = dict(factory="HNSW32,Flat", ef_construction=index.hnsw.efConstruction)
    train_s = time.perf_counter() - t
    for start in range(0, n, CHUNK):
        index.add(np.asarray(rows[start:start + CHUNK], np.float32))
    build_s = time.perf_counter() - t
    faiss.write_index(index, out)
    emit(what="build", system=f"faiss {kind}", build_s=build_s, train_s=train_s, index_bytes=os.path.getsize(out),
         rows=n, peak_rss_self=peak_rss(), **params)


def faiss_search(work, kind, path):
    faiss = faiss_setup(1)
    _, queries, truth = load(work)
    index = faiss.read_index(path)
    if kind == "ivfpq":
        ivf = faiss.extract_index_ivf(index)
        nlist = ivf.nlist

        def run(p):
            nprobe, kf = p
            ivf.nprobe = nprobe
            index.k_factor = kf
            ids = []
            t = time.perf_counter()
            for i in range(len(queries)):
                ids.append(index.search(queries[i:i + 1], K_TOP)[1][0])
            return ids, time.perf_counter() - t
        for kf in (1, 4, 16, 64):
            probes = [p for p in (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if p <= nlist]
            sweep("faiss IVF-PQ", [(p, kf) for p in probes], lambda p: run(p), truth)
    else:
        def run(ef):
            index.hnsw.efSearch = ef
            ids = []
            t = time.perf_counter()
            for i in range(len(queries)):
                ids.append(index.search(queries[i:i + 1], K_TOP)[1][0])
            return ids, time.perf_counter() - t
        sweep("faiss HNSW", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512], run, truth)


# ---- Lance -------------------------------------------------------------------------------------

def lance_write(work, directory):
    import lance, pyarrow as pa
    rows, _, _ = load(work)
    n, k = rows.shape
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float16(), k))])

    def batches():
        for start in range(0, n, CHUNK):
            block = np.ascontiguousarray(rows[start:start + CHUNK])
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1), pa.float16()), k)
            yield pa.record_batch([pa.array(np.arange(start, start + len(block), dtype=np.int64)), vectors], schema=schema)
    t = time.perf_counter()
    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()), directory, mode="overwrite")
    emit(what="lance-write", seconds=time.perf_counter() - t, rows=n)


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def lance_build(work, directory, kind):
    import lance
    ds = lance.dataset(directory)
    n = ds.count_rows()
    k = ds.schema.field("vector").type.list_size
    nlist = nlist_for(n)
    t = time.perf_counter()
    if kind == "ivf_pq":
        params = dict(num_partitions=nlist, num_sub_vectors=k // 4)
        ds.create_index("vector", index_type="IVF_PQ", metric="cosine", replace=True, **params)
    else:
        # IVF with an HNSW graph per partition over 8-bit scalar codes; fewer, larger partitions
        # (√N) suit the per-partition graphs.
        params = dict(num_partitions=max(1, nlist // 4), m=32, ef_construction=100)
        ds.create_index("vector", index_type="IVF_HNSW_SQ", metric="cosine", replace=True, **params)
    build_s = time.perf_counter() - t
    emit(what="build", system=f"lance {kind}", build_s=build_s, index_bytes=directory_bytes(os.path.join(directory, "_indices")),
         data_bytes=directory_bytes(os.path.join(directory, "data")), rows=n, peak_rss_self=peak_rss(), **params)


def lance_search(work, directory, kind):
    import lance
    _, queries, truth = load(work)
    # Lance answers one query in tens of milliseconds here (its per-query planning dominates), so
    # it is timed on the first LANCE_QUERIES queries (default 100) to keep the sweep in minutes.
    limit = int(os.environ.get("LANCE_QUERIES", "100"))
    queries, truth = queries[:limit], truth[:limit]
    ds = lance.dataset(directory)

    def run(p):
        nearest = dict(column="vector", k=K_TOP, **p)
        ids = []
        t = time.perf_counter()
        for q in queries:
            nearest["q"] = q
            ids.append(ds.to_table(nearest=nearest, columns=["id"])["id"].to_numpy())
        return ids, time.perf_counter() - t
    probes = (1, 2, 4, 8, 16, 32, 64, 128)
    if kind == "ivf_pq":
        for rf in (4, 16):
            sweep("lance IVF_PQ", [dict(nprobes=p, refine_factor=rf) for p in probes], run, truth)
    else:
        for ef in (32, 128):
            sweep("lance IVF_HNSW_SQ", [dict(nprobes=p, ef=ef) for p in probes], run, truth)


# ---- GradSketch (Snapshot.query through the C library) -----------------------------------------

def gs_search(work, store, index, system):
    import gradsketch
    _, queries, truth = load(work)
    snapshot = gradsketch.Store.open(store).snapshot()

    def run(p):
        nprobe, rerank = p
        ids = []
        t = time.perf_counter()
        for q in queries:
            hits = snapshot.query("base", q, k=K_TOP, index=index, nprobe=nprobe, rerank=rerank, annotations=False).lists[0]
            ids.append([int(h.id) for h in hits])  # `gradsketch import npy` ids are row indexes
        return ids, time.perf_counter() - t
    plan = snapshot.query("base", queries[0], k=K_TOP, index=index, nprobe=1, annotations=False).plan
    lists = plan.get("lists", 1 << 20)
    probes = [p for p in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if p <= lists]
    for rerank in (0, 64):  # 0: the index's default (32 at k = 10)
        sweep(system, [(p, rerank) for p in probes], run, truth)


def gs_bench(work, bench, store, index, system):
    """`gradsketch-bench ann STORE SET Q TRUTH ip NPROBES reuse=INDEX`: the index's searcher kept open
    in one Swift process, queries one at a time (no C/Python layer); its records re-emitted."""
    import subprocess
    probes = "1,2,3,4,6,8,12,16,24,32,48,64,96,128,192,256"
    out = subprocess.run([bench, "ann", store, "base", os.path.join(work, "queries.npy"), os.path.join(work, "truth.npy"),
                          "ip", probes, f"reuse={index}"], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        r = json.loads(line)
        if r.get("method") not in ("gradsketch ivf-int8", "gradsketch ivf-rq4"):
            continue
        emit(what="search", system=system, param=r["params"], recall=r["recall_at_k"], qps=r["qps_1thread"])


# ---- a build under /usr/bin/time -v -----------------------------------------------------------

def timed(system, row_bytes_read, command):
    """Runs one build process under /usr/bin/time -v: wall seconds measured here, peak RSS of the
    process, and the fields of the JSON record it printed (scale.py's build record, or
    `gradsketch index build --json`)."""
    import re, subprocess
    t = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if run.returncode != 0:
        log(run.stdout[-2000:], run.stderr[-4000:])
        emit(what="build", system=system, failed=True, error=run.stderr[-500:])
        return
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1)) * 1024
    out = run.stdout.strip()
    child = json.loads(out[out.find("{"):]) if "{" in out else {}
    child.pop("what", None)
    child.pop("system", None)
    fields = dict(child)
    fields.update(build_s=wall, inner_build_s=child.get("build_s", child.get("seconds")), peak_rss=rss,
                  row_bytes_read=float(row_bytes_read))
    emit(what="build", system=system, **fields)
    log(f"  {system:<24} build {wall:8.1f} s  peak RSS {rss / 1e9:6.2f} GB")


# ---- table -------------------------------------------------------------------------------------

def table(paths):
    records = [json.loads(line) for p in paths for line in open(p) if line.startswith("{")]
    # Build records name the system as scale.sh calls its builder; searches by display name.
    aliases = {"faiss ivfpq": "faiss IVF-PQ", "faiss hnsw": "faiss HNSW", "lance ivf_pq": "lance IVF_PQ",
               "lance ivf_hnsw_sq": "lance IVF_HNSW_SQ"}
    for r in records:
        if "system" in r:
            r["system"] = aliases.get(r["system"], r["system"])
    by_n = {}
    for r in records:
        by_n.setdefault(r.get("n"), []).append(r)
    lines = []
    for n, rs in sorted(by_n.items(), key=lambda kv: kv[0] or 0):
        meta = next((r for r in rs if r["what"] == "run"), {})
        lines.append(f"### N = {n:,}, k = {meta.get('k')} float16, cosine, {meta.get('nq')} held-out queries "
                     f"(load at start {meta.get('load_start')}, at end {meta.get('load_end', '?')})")
        lines.append("")
        lines.append("| system | build s | peak RSS GB | index B/row | + rows read B/row | QPS@R≥0.95 (1 thread) | recall | param |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        builds = {r["system"]: r for r in rs if r["what"] == "build"}
        searches = [r for r in rs if r["what"] == "search"]
        for system in dict.fromkeys([*builds, *(s["system"] for s in searches)]):
            b = builds.get(system, {})
            ok = [s for s in searches if s["system"] == system and s["recall"] >= TARGET]
            best = max(ok, key=lambda s: s["qps"]) if ok else None
            top = max((s for s in searches if s["system"] == system), key=lambda s: s["recall"], default=None)
            fmt = lambda v, f: "—" if v is None else format(v, f)
            rss = b.get("peak_rss")
            if system.endswith("(Swift)"):
                b = {}  # the same index as the row above, searched in one Swift process
            lines.append(
                f"| {system} | {fmt(b.get('build_s'), '.1f')} | {fmt(rss / 1e9 if rss else None, '.2f')} | "
                f"{fmt(b['index_bytes'] / b['rows'] if b.get('index_bytes') else None, '.1f')} | {fmt(b.get('row_bytes_read'), '.0f')} | "
                + (f"{best['qps']:.0f} | {best['recall']:.3f} | {best['param']} |" if best else
                   f"not reached | {fmt(top['recall'] if top else None, '.3f')} (max) | {top['param'] if top else '—'} |"))
        for u in (r for r in rs if r["what"] == "update"):
            lines.append("")
            lines.append(f"1 % update ({u['rows']:,} rows), {u['system']}: append {u['append_s']:.1f} s, index {u['how']} "
                         f"{u['index_s']:.1f} s = {100 * u['index_s'] / u['full_build_s']:.1f} % of the full build ({u['full_build_s']:.1f} s)")
        for r in (r for r in rs if r["what"] == "import"):
            lines.append(f"import: {r['rows']:,} rows in {r['seconds']:.1f} s = {r['rows'] / r['seconds']:,.0f} rows/s")
        lines.append("")
    # Growth with N: build seconds and QPS@0.95 of each system at each size.
    sizes = sorted(n for n in by_n if n)
    if len(sizes) > 1:
        lines.append("### Growth with N (build s / QPS at recall@10 >= 0.95, one thread)")
        lines.append("")
        lines.append("| system | " + " | ".join(f"N = {n:.0e}" for n in sizes) + " |")
        lines.append("|---|" + "---:|" * len(sizes))
        systems = dict.fromkeys(r["system"] for rs in by_n.values() for r in rs if r["what"] in ("build", "search"))
        for system in systems:
            cells = []
            for n in sizes:
                b = next((r for r in by_n[n] if r["what"] == "build" and r["system"] == system), None)
                ok = [r["qps"] for r in by_n[n] if r["what"] == "search" and r["system"] == system and r["recall"] >= TARGET]
                cells.append(f"{b['build_s']:.0f} s / " if b and "build_s" in b else "— / ")
                cells[-1] += f"{max(ok):.0f}" if ok else "—"
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
    print("\n".join(lines))


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "data":
        data(a[0], int(float(a[1])), int(a[2]), int(a[3]), int(a[4]))
    elif cmd == "faiss-build":
        faiss_build(*a)
    elif cmd == "faiss-search":
        faiss_search(*a)
    elif cmd == "lance-write":
        lance_write(*a)
    elif cmd == "lance-build":
        lance_build(*a)
    elif cmd == "lance-search":
        lance_search(*a)
    elif cmd == "gs-search":
        gs_search(*a)
    elif cmd == "gs-bench":
        gs_bench(*a)
    elif cmd == "timed":
        timed(a[0], a[1], a[3:] if a[2] == "--" else a[2:])
    elif cmd == "table":
        table(a)
    else:
        sys.exit(f"scale.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
