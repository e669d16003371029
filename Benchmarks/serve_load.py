"""Load client for `gradsketch serve` (Benchmarks/serve-load.sh): C threads, each with one
keep-alive http.client connection, POST top-k queries for T seconds; prints one JSON line
with requests/s, p50/p90/p99 latency (ms) and the error count (any status but 200, or a
connection failure).

Usage: python3 serve_load.py URL SET K CONCURRENCY SECONDS [JSON-EXTRA]
  JSON-EXTRA: fields merged into every query body, e.g. '{"index": "exact"}'.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.parse

import numpy as np


def worker(host: str, port: int, path: str, bodies: list[bytes], deadline: float,
           latencies: list[float], errors: list[str]) -> None:
    """Sends queries on one connection until `deadline`, recording each latency in seconds."""
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/json"}
    sent = 0
    while time.perf_counter() < deadline:
        body = bodies[sent % len(bodies)]
        sent += 1
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                errors.append(f"{response.status}: {payload[:200]!r}")
                continue
        except (OSError, http.client.HTTPException) as error:
            errors.append(repr(error))
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            continue
        latencies.append(time.perf_counter() - started)
    connection.close()


def main() -> None:
    url, set_name, k, concurrency, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    extra = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    parsed = urllib.parse.urlparse(url)
    rng = np.random.default_rng(concurrency)
    bodies = [json.dumps({"vector": rng.standard_normal(k).astype(np.float32).tolist(), "k": 10, **extra}).encode()
              for _ in range(64)]
    path = f"/v1/sets/{urllib.parse.quote(set_name)}/query"
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(parsed.hostname, parsed.port, path, bodies, deadline, per_thread[i], errors))
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = np.array([value for values in per_thread for value in values]) * 1000
    p50, p90, p99 = (np.percentile(latencies, [50, 90, 99]) if len(latencies) else [float("nan")] * 3)
    print(json.dumps({"concurrency": concurrency, "requests": int(len(latencies)), "requests_per_s": len(latencies) / elapsed,
                      "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "errors": len(errors),
                      "first_error": errors[0] if errors else None, **{f"query_{key}": value for key, value in extra.items()}}))


if __name__ == "__main__":
    main()
