"""Benchmark: one new_symbols_sensor tick with the whole universe pending (the first deployment's load).

Dagster's sensor timeout is 60 s; the tick must stay well under it. The assets table is filled by a
real first sync of the default universe (12,062 pending symbols); the tick is timed three times.

    python -m benchmarks.sensor_tick
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from signal9_devstack.local import stack


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signal9-bench-sensor-"))
    env = stack.up(home)
    try:
        os.environ.update(env)
        import dagster as dg

        from signal9_pipeline.definitions import defs
        from signal9_pipeline.pollenation.sensor import new_symbols_sensor, pending_companies
        from signal9_pipeline.resources.dynamodb import DynamoDBResource

        assert defs.resolve_job_def("asset_sync_job").execute_in_process().success
        pending = len(pending_companies(DynamoDBResource.from_settings()))
        times, requested = [], 0
        with dg.instance_for_test() as instance:
            for _ in range(3):
                started = time.perf_counter()
                result = new_symbols_sensor(dg.build_sensor_context(
                    instance=instance, resources={"dynamodb": DynamoDBResource.from_settings()}))
                times.append(time.perf_counter() - started)
                requested = len(result) if isinstance(result, list) else 0
    finally:
        stack.down(home)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "command: python -m benchmarks.sensor_tick")
    print("| pending symbols | runs requested per tick | tick, median of 3 (s) | slowest (s) |")
    print("|---|---|---|---|")
    print(f"| {pending} | {requested} | {statistics.median(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
