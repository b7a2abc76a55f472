"""Host measurement (latency, peak memory) of exported artifacts, in fresh subprocesses; runtimes that run them."""

from .host import HostMeasurement, host_threads, measure, probe_load
from .runtimes import Runner, open_runner, run_batched, runtime_available

__all__ = [
    "HostMeasurement",
    "Runner",
    "host_threads",
    "measure",
    "open_runner",
    "probe_load",
    "run_batched",
    "runtime_available",
]
