"""Helpers for Benchmarks/engine.sh: data, process timing and the summary table.

  python3 engine.py make DIR N K QUERIES         clustered float16 rows, float32 queries, exact top-10 truth
  python3 engine.py cold NAME REPEAT TRUTH.npy -- COMMAND...   run COMMAND once to warm the page cache,
        then REPEAT times, each a new process under /usr/bin/time -v; the command's {q} is replaced by
        the query number. Prints wall time (median, p90), peak resident memory and recall@10 of the ids.
  python3 engine.py append-cli GRADSKETCH STORE BATCH.npy APPENDS   APPENDS `gradsketch append` processes
  python3 engine.py summary RESULTS.jsonl ROW_BYTES INDEX_BYTES     ratios and the table (with a "before"
        column when records named before-* are present: the same figures from an older build)
  python3 engine.py prefix PREFIX       copies stdin to stdout, PREFIX added to each JSON record's "what"
Every figure is one JSON object per line on stdout.
"""
import json, os, re, subprocess, sys, time
import numpy as np


def emit(**fields):
    print(json.dumps(fields, sort_keys=True), flush=True)


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def make(directory, n, k, queries):
    """A few hundred Gaussian clusters, so an IVF index has structure to find. Centres have norm
    about 1, each row adds noise of norm about 0.6; queries come from the same clusters (new draws,
    not stored rows). The truth is exact inner-product top-10 over the stored float16 values."""
    rng = np.random.default_rng(13)
    clusters = 256
    centres = rng.standard_normal((clusters, k), dtype=np.float32) / np.sqrt(k)
    rows = np.lib.format.open_memmap(f"{directory}/rows.npy", mode="w+", dtype=np.float16, shape=(n, k))
    chunk = 65536
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        members = rng.integers(0, clusters, end - start)
        block = rng.standard_normal((end - start, k), dtype=np.float32) * np.float32(0.6 / np.sqrt(k))
        block += centres[members]
        rows[start:end] = block.astype(np.float16)
    rows.flush()
    members = rng.integers(0, clusters, queries)
    q = (centres[members] + rng.standard_normal((queries, k), dtype=np.float32) * np.float32(0.6 / np.sqrt(k))).astype(np.float32)
    np.save(f"{directory}/queries.npy", q)
    for i in range(queries):
        np.save(f"{directory}/q{i}.npy", q[i])
    best_scores = np.full((queries, 10), -np.inf, dtype=np.float32)
    best_ids = np.zeros((queries, 10), dtype=np.int64)
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        scores = q @ np.asarray(rows[start:end], dtype=np.float32).T  # [Q, chunk]
        top = np.argpartition(-scores, 9, axis=1)[:, :10]
        candidate_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], 1)
        candidate_ids = np.concatenate([best_ids, top + start], 1)
        order = np.argsort(-candidate_scores, axis=1, kind="stable")[:, :10]
        best_scores = np.take_along_axis(candidate_scores, order, 1)
        best_ids = np.take_along_axis(candidate_ids, order, 1)
    np.save(f"{directory}/truth.npy", best_ids)
    np.save(f"{directory}/batch.npy", rng.standard_normal((64, k), dtype=np.float32).astype(np.float16))


def timed(command):
    """Wall time of one process measured here; its peak RSS and CPU seconds from /usr/bin/time -v."""
    start = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v"] + command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"engine.py: {' '.join(command)} failed:\n{run.stderr}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    cpu = [float(re.search(rf"{kind} time \(seconds\): ([0-9.]+)", run.stderr).group(1)) for kind in ("User", "System")]
    return wall, rss_kb * 1024, cpu, run.stdout


def ids_of(stdout):
    """Row positions of the printed hits: the data's default ids are <segment-id>:<row>, and the
    benchmark store has one segment, so <row> is the position."""
    document = json.loads(stdout)
    found = []

    def walk(value):
        if isinstance(value, dict):
            if "id" in value and isinstance(value["id"], str):
                found.append(int(value["id"].rsplit(":", 1)[1]))
            else:
                for item in value.values():
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(document)
    return found


def cold(name, repeat, truth_path, command):
    truth = np.load(truth_path)
    timed([part.replace("{q}", "0") for part in command])  # warm the page cache
    walls, rss, user, system, hits = [], [], [], [], 0
    for q in range(repeat):
        wall, peak, (user_s, system_s), stdout = timed([part.replace("{q}", str(q)) for part in command])
        walls.append(wall)
        rss.append(peak)
        user.append(user_s)
        system.append(system_s)
        hits += len(set(ids_of(stdout)[:10]) & set(truth[q, :10].tolist()))
    emit(what=name, queries=repeat, median_s=percentile(walls, 0.5), p90_s=percentile(walls, 0.9),
         max_rss_bytes=max(rss), median_rss_bytes=percentile(rss, 0.5), median_user_s=percentile(user, 0.5),
         median_system_s=percentile(system, 0.5), recall_at_10=hits / (10 * repeat))


def append_cli(gradsketch, store, batch, appends):
    times = []
    ids_path = f"{store}.ids"
    for index in range(appends):
        with open(ids_path, "w") as f:
            f.write("".join(f"a{index}-{row}\n" for row in range(64)))
        start = time.perf_counter()
        subprocess.run([gradsketch, "append", store, "--set", "grow", "--rows", batch, "--ids", ids_path],
                       check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    window = max(1, min(100, appends // 2))
    first, last = sum(times[:window]) / window, sum(times[-window:]) / window
    emit(what="append-growth-cli", appends=appends, rows_per_append=64, window=window,
         first_mean_s=first, last_mean_s=last, ratio=last / first, seconds=times)


def prefix(tag):
    for line in sys.stdin:
        if line.startswith("{"):
            record = json.loads(line)
            record["what"] = tag + record["what"]
            line = json.dumps(record, sort_keys=True) + "\n"
        sys.stdout.write(line)
    sys.stdout.flush()


def summary(path, row_bytes, index_bytes):
    runs = {}
    for line in open(path):
        if line.startswith("{"):
            record = json.loads(line)
            runs.setdefault(record["what"], []).append(record)
    out, table = figures(runs, row_bytes, index_bytes, "")
    before_runs = {what[len("before-"):]: records for what, records in runs.items() if what.startswith("before-")}
    before_out, before_table = figures(before_runs, row_bytes, index_bytes, "before-") if before_runs else ([], [])
    for record in out + before_out:
        emit(**record)
    header = ("figure", "value", "baseline (same run)", "ratio", "target")
    if before_table:
        # One row per figure: this build's value, then the older build's value of the same figure.
        old = {row[0]: row[1] for row in before_table}
        header = header + ("before (older build, same run)",)
        table = [row + (old.get(row[0], "-"),) for row in table]
    widths = [max(len(row[i]) for row in table + [header]) for i in range(len(header))]
    print(file=sys.stderr)
    for row in [header] + table:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)), file=sys.stderr)


def figures(runs, row_bytes, index_bytes, tag):
    """The derived records (their "what" prefixed with `tag`) and the table rows of one build."""
    one = lambda what: runs.get(what, [None])[0]
    warm = next((r for r in runs.get("ann", []) if "(tuned)" in r.get("params", "")), None)
    warm_s = 1 / warm["qps_1thread"] if warm else None
    stream = one("stream-readsum")
    table = []  # (figure, value, baseline, ratio, target)
    out = []
    for what, label in (("cold-indexed", "cold indexed top-10 (new process)"), ("cold-exact", "cold --exact top-10 (new process)")):
        r = one(what)
        if not r:
            continue
        out.append(dict(what=what + "-latency", median_s=r["median_s"], p90_s=r["p90_s"], baseline="warm in-process indexed query",
                        baseline_s=warm_s, ratio=r["median_s"] / warm_s if warm_s else None, target_s=0.050 if what == "cold-indexed" else None))
        table.append((f"{label}: median wall", f"{r['median_s'] * 1e3:.1f} ms", f"warm {warm_s * 1e3:.2f} ms" if warm_s else "-",
                      f"{r['median_s'] / warm_s:.0f}×" if warm_s else "-", "≤ 50 ms" if what == "cold-indexed" else "-"))
        table.append((f"{label}: p90 wall", f"{r['p90_s'] * 1e3:.1f} ms", "", "", ""))
        table.append((f"{label}: CPU user + system", f"{r['median_user_s'] * 1e3:.0f} + {r['median_system_s'] * 1e3:.0f} ms", "(medians)", "", ""))
        fraction = r["max_rss_bytes"] / (row_bytes + index_bytes)
        out.append(dict(what=what + "-memory", max_rss_bytes=r["max_rss_bytes"], baseline="row bytes + index bytes",
                        baseline_bytes=row_bytes + index_bytes, ratio=fraction, target_ratio=0.05 if what == "cold-indexed" else None))
        table.append((f"{label}: peak RSS", f"{r['max_rss_bytes'] / 2**20:.0f} MiB", f"rows+index {(row_bytes + index_bytes) / 2**20:.0f} MiB",
                      f"{fraction * 100:.1f} %", "≤ 5 %" if what == "cold-indexed" else "-"))
        table.append((f"{label}: recall@10", f"{r['recall_at_10']:.3f}", "", "", ""))
    if warm:
        out.append(dict(what="warm-indexed", seconds=warm_s, qps=warm["qps_1thread"], recall_at_10=warm["recall_at_k"], params=warm["params"],
                        baseline="gradsketch-bench ann (tuned nprobe), this run", ratio=1.0, target_ratio=1.2))
        table.append(("warm indexed top-10 (in process, 1 thread)", f"{warm_s * 1e3:.2f} ms", "gradsketch-bench ann (itself, today)", "1.00",
                      "≤ 1.2×"))
        table.append(("  recall@10 / parameters", f"{warm['recall_at_k']:.3f}", warm["params"], "", ""))
    for threads in ("1t", "2t"):
        r = one(f"search-gradsketch-{threads}")
        if r:
            ratio = r["gbps"] / stream["gbps"] if stream else None
            out.append(dict(what=f"exact-bandwidth-{threads}", gbps=r["gbps"], qps=r["qps"], baseline="STREAM ReadSum (2 threads)",
                            baseline_gbps=stream["gbps"] if stream else None, ratio=ratio,
                            target_ratio=0.8 if threads == "2t" else None))
            table.append((f"exact single-query scan, {threads}", f"{r['gbps']:.1f} GB/s", f"STREAM {stream['gbps']:.1f} GB/s" if stream else "-",
                          f"{ratio:.2f}" if ratio else "-", "≥ 0.8" if threads == "2t" else "-"))
    for what, label in (("append-growth-cli", "1000 × 64-row appends, CLI processes"), ("append-growth-library", "1000 × 64-row appends, library")):
        r = one(what)
        if r:
            label = label.replace("1000", str(r["appends"]))
            out.append(dict(what=what + "-ratio", first_mean_s=r["first_mean_s"], last_mean_s=r["last_mean_s"], ratio=r["ratio"], target_ratio=1.2,
                            window=r["window"]))
            table.append((f"{label}: last {r['window']} mean", f"{r['last_mean_s'] * 1e3:.1f} ms", f"first {r['window']} {r['first_mean_s'] * 1e3:.1f} ms",
                          f"{r['ratio']:.2f}", "≤ 1.2"))
    for record in out:
        record["what"] = tag + record["what"]
    return out, table


command = sys.argv[1]
if command == "make":
    make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
elif command == "cold":
    separator = sys.argv.index("--")
    cold(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[separator + 1:])
elif command == "append-cli":
    append_cli(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
elif command == "prefix":
    prefix(sys.argv[2])
elif command == "summary":
    summary(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    sys.exit(f"engine.py: unknown command {command}")
