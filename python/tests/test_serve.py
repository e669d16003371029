"""End-to-end test of `gradsketch serve`: the release CLI on an ephemeral loopback port,
answers checked against numpy, bad requests refused with 400 and 404 (Spec/serve.md).

Uses only the standard library's urllib as the HTTP client. The binary comes from the
environment variable GRADSKETCH_CLI, else <repo>/.build/release/gradsketch (built, with its
sibling gradsketch-serve, when missing).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS, K = 400, 32


def cli_path() -> Path:
    """The gradsketch binary under test, built when the default one is missing."""
    configured = os.environ.get("GRADSKETCH_CLI")
    if configured:
        return Path(configured)
    release = REPO / ".build" / "release"
    for product in ("gradsketch", "gradsketch-serve"):
        if not (release / product).exists():
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=REPO, check=True)
    return release / "gradsketch"


def call(url: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    """Sends one request; returns the status and the decoded JSON body (also for 4xx)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """The rows the store holds, float32 [ROWS, K]."""
    return np.random.default_rng(14).standard_normal((ROWS, K), dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, rows: np.ndarray) -> Iterator[str]:
    """A store with set "train" (ids doc-0 … doc-399) served on a free port; yields the base URL."""
    work = tmp_path_factory.mktemp("serve")
    cli = str(cli_path())
    np.save(work / "rows.npy", rows)
    (work / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(ROWS)), encoding="utf-8")
    store = str(work / "store")
    subprocess.run([cli, "init", store], check=True, capture_output=True)
    subprocess.run([cli, "append", store, "--set", "train", "--rows", str(work / "rows.npy"),
                    "--ids", str(work / "ids.txt")], check=True, capture_output=True)
    process = subprocess.Popen([cli, "serve", store, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(r"listening on (http://\S+) \(store (.*), version (\d+)\)$", line.strip())
        assert match, f"expected the listening line, found {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        assert match.group(2) == store and match.group(3) == "1"
        yield match.group(1)
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def numpy_top_k(rows: np.ndarray, query: np.ndarray, k: int, metric: str) -> tuple[list[str], np.ndarray]:
    """The reference: every row scored in float64, best first."""
    scores = rows.astype(np.float64) @ query.astype(np.float64)
    if metric == "cosine":
        scores /= np.linalg.norm(rows.astype(np.float64), axis=1) * np.linalg.norm(query.astype(np.float64))
    order = np.argsort(-scores, kind="stable")[:k]
    return [f"doc-{i}" for i in order], scores[order]


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_query_matches_numpy(server: str, rows: np.ndarray, metric: str) -> None:
    query = np.random.default_rng(5).standard_normal(K, dtype=np.float32)
    status, body = call(f"{server}/v1/sets/train/query", {"vector": query.tolist(), "k": 15, "metric": metric})
    assert status == 200, body
    hits = body["results"][0]
    ids, scores = numpy_top_k(rows, query, 15, metric)
    assert [hit["id"] for hit in hits] == ids
    # float32 accumulation over 32 products of unit normals; tolerance 1e-4 relative to the scale.
    np.testing.assert_allclose([hit["score"] for hit in hits], scores, rtol=1e-5, atol=1e-4)
    assert body["version"] == 1 and body["set"] == "train"


def test_health_and_sets(server: str) -> None:
    assert call(f"{server}/v1/health") == (200, {"status": "ok", "version": 1})
    status, sets = call(f"{server}/v1/sets")
    assert status == 200
    assert [(s["name"], s["k"], s["dtype"], s["rows"]) for s in sets] == [("train", K, "float32", ROWS)]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    ({"vector": [1.0, 2.0]}, f"must have {K} values"),
    ({"vector": [0.5] * K, "k": 0}, "\"k\" must be in"),
    ({"vector": [0.5] * K, "metric": "euclid"}, "metric"),
])
def test_bad_requests_get_400(server: str, body: Any, fragment: str) -> None:
    status, error = call(f"{server}/v1/sets/train/query", body)
    assert status == 400 and error["status"] == 400
    assert fragment in error["error"]


def test_unknown_names_get_404(server: str) -> None:
    status, error = call(f"{server}/v1/sets/missing/query", {"vector": [0.5] * K})
    assert (status, error["status"]) == (404, 404) and "missing" in error["error"]
    status, error = call(f"{server}/v1/sets/train/query", {"row_id": "doc-99999"})
    assert status == 404 and "doc-99999" in error["error"]
    status, error = call(f"{server}/v1/nowhere")
    assert status == 404
