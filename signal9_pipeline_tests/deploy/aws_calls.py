"""Run the whole pipeline once in this process and print every AWS API call it made, as JSON lines.

The sync, pollenation, a bars partition and a corporate-actions partition.

`test_iam_policy.py` runs this in a fresh process (so step outputs go to S3 through the
S3 IO manager) and checks the calls against deploy/iam/run-task-policy.json. Each call is
recorded and then made for real, against dynalite and moto.
"""

from __future__ import annotations

import json
import sys

import botocore.client
import dagster as dg

CALLS: list[dict] = []
_make_api_call = botocore.client.BaseClient._make_api_call


def _recording(self, operation_name: str, api_params: dict):
    CALLS.append({"service": self.meta.service_model.service_id, "operation": operation_name,
                  "params": json.loads(json.dumps(api_params, default=str))})
    return _make_api_call(self, operation_name, api_params)


def main(bars_date: str) -> None:
    botocore.client.BaseClient._make_api_call = _recording
    from signal9_pipeline.resources import metrics
    from signal9_pipeline.resources.alerts import AlertsResource
    from signal9_pipeline_tests.support import drive_sensor, materialize_bars, run_sync

    with dg.instance_for_test() as instance:
        assert run_sync(instance=instance).success
        pollenated = drive_sensor(instance)
        assert pollenated and all(r.success for r in pollenated)
        assert materialize_bars("1Day", bars_date, bars_date, instance=instance).success
        from signal9_pipeline.definitions import defs

        actions = defs.resolve_job_def("corporate_actions_job").execute_in_process(
            instance=instance, partition_key=bars_date, raise_on_error=False)
        assert actions.success
    AlertsResource.from_settings().publish("signal9 policy check",
                                           "the alerting path, as pipeline_run_failure_alert uses it")
    metrics.flush()
    for call in CALLS:
        print(json.dumps(call))


if __name__ == "__main__":
    main(sys.argv[1])
