"""Collector overhead on a small GPT: plain forward+backward vs the same with LoGra sketches.

    python3 python/benchmarks/collector_overhead.py [--steps 10] [--batch 8] [--threads 2]

(the library is found as gradsketch._native documents, e.g. GRADSKETCH_LIBRARY).

Every step is one batch (default 8 sequences of 128 tokens). "plain" is forward + backward;
"collector" is forward + backward with the collector's hooks on every nn.Linear (k 16x16 each)
plus appending the batch's rows to the store's append session. The table gives the median
step time of each and their ratio (target <= 2x), rows per second, and a breakdown of the
collector step: the hooks' projection and accumulation work, and the append.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package first
import gradsketch as gs  # noqa: E402
from gradsketch.logra import LoGraCollector  # noqa: E402
from gradsketch.lm.config import GPTConfig  # noqa: E402
from gradsketch.lm.model import TinyGPT, per_example_loss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="measured steps of each kind (after 2 warm-up steps)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side", type=int, default=16)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(layers=4, width=256, heads=4, context=arguments.tokens))
    parameters = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 256, (arguments.batch, arguments.tokens + 1), generator=generator)
               for _ in range(arguments.steps + 2)]

    def plain_step(tokens: torch.Tensor) -> None:
        model.zero_grad(set_to_none=True)
        per_example_loss(model, tokens).sum().backward()

    # Plain and collector steps alternate, so that a change in the machine's load affects both
    # alike. During the plain steps the collector's hooks stay attached but idle (outside a
    # batch a forward hook returns at once: one Python call per layer).
    plain, collected, appends = [], [], []
    with tempfile.TemporaryDirectory() as directory:
        store = gs.Store.create(str(Path(directory) / "store"))
        collector = LoGraCollector(model, store, "train", seed=0, k=(arguments.side, arguments.side))
        collector.start()
        original_append = collector._append

        def timed_append(batch, rows):            # times the streaming append inside the step
            start = time.perf_counter()
            original_append(batch, rows)
            appends.append(time.perf_counter() - start)

        collector._append = timed_append
        for index, tokens in enumerate(batches):
            start = time.perf_counter()
            plain_step(tokens)
            middle = time.perf_counter()
            with collector.batch([f"s{index}-{i}" for i in range(arguments.batch)]):
                plain_step(tokens)
            end = time.perf_counter()
            if index >= 2:
                plain.append(middle - start)
                collected.append(end - middle)
        start = time.perf_counter()
        version = collector.finish()
        commit_time = time.perf_counter() - start
        with store.snapshot() as snapshot:
            info = snapshot.info("train")
        store.close()

    plain_median, collected_median = statistics.median(plain), statistics.median(collected)
    append_median = statistics.median(appends[2:])
    rows = arguments.batch
    print(f"TinyGPT: {parameters / 1e6:.2f}M parameters, {len(collector.layout)} Linear layers sketched "
          f"{arguments.side}x{arguments.side} (row k = {collector.k}), batch {rows} x {arguments.tokens} tokens, "
          f"torch threads {arguments.threads}, {arguments.steps} measured steps; committed version {version}, "
          f"{info.rows} rows, dtype {info.dtype}")
    print(f"{'':32}{'median s/step':>15}{'rows/s':>10}")
    print(f"{'plain forward+backward':32}{plain_median:15.4f}{rows / plain_median:10.1f}")
    print(f"{'with collector (incl. append)':32}{collected_median:15.4f}{rows / collected_median:10.1f}")
    print(f"{'  of which hooks (proj+accum)':32}{collected_median - plain_median - append_median:15.4f}")
    print(f"{'  of which append of rows':32}{append_median:15.4f}")
    print(f"{'commit (once, at the end)':32}{commit_time:15.4f}")
    ratios = [c / p for c, p in zip(collected, plain)]
    print(f"overhead ratio collector/plain: {collected_median / plain_median:.2f}x of the medians, "
          f"{statistics.median(ratios):.2f}x median of the step pairs (target <= 2x)")


if __name__ == "__main__":
    main()
