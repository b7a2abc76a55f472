"""Measurement worker: one fresh process per measured artifact.

    python -m adaptc.measure.worker RUNTIME MODEL INPUTS.npz THREADS RUNS WARMUP

Prints one JSON line. Peak memory: after importing the runtime and loading the inputs, the resident-set
peak is reset (``echo 5 > /proc/self/clear_refs``); then the session is built and run once; VmHWM is the
true peak and the RssAnon delta the most reproducible figure (see docs/measurement.md). Latency: warm-up
runs, then ``RUNS`` timed calls at batch 1 with ``time.perf_counter_ns``; the inputs are bound once
(``Runner.timed_call``), so only the runtime's own call is timed (``InferenceSession.run``, LiteRT
``invoke``).
"""

from __future__ import annotations

import json
import sys
import time


def _status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    runtime, model, inputs_path, threads, runs, warmup = argv
    threads_i, runs_i, warmup_i = int(threads), int(runs), int(warmup)
    import numpy as np

    from adaptc.measure import runtimes

    # Import the runner and its runtime before the reset so their code pages are not counted as the model's.
    preload = getattr(runtimes.runner_class(runtime), "preload", None)
    if preload is not None:
        preload()
    with np.load(inputs_path) as z:
        arrays = [z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[-1]))]
    before = _status()
    reset = _reset_peak()
    before_reset = _status()
    runner = runtimes.open_runner(runtime, model, threads_i, timing=True)
    runner.run(arrays)
    after = _status()
    call = runner.timed_call(arrays)  # inputs bound once: the runtime call is what is timed
    for _ in range(warmup_i):
        call()
    times = []
    for _ in range(runs_i):
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    after_runs = _status()
    print(
        json.dumps(
            {
                "times_ms": times,
                "peak_reset": reset,
                "baseline": before_reset if reset else before,
                "after_first_run": after,
                "after_runs": after_runs,
                "runtime_version": runner.version(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
