"""Plain logic stays plain: the pure modules load without Dagster, alpaca-py or the AWS SDK.

Each is imported in a fresh interpreter (this process has long imported everything), so a
stray import anywhere in its chain fails here, naming the module that pulled it in.
"""

import json
import subprocess
import sys

import pytest

PURE = [
    "signal9_pipeline.assets_sync.changes",
    "signal9_pipeline.assets_sync.validation",
    "signal9_pipeline.pollenation.batches",
    "signal9_pipeline.market_data.days",
    "signal9_pipeline.market_data.codec",
    "signal9_pipeline.corporate_actions.actions",
    "signal9_pipeline.logs",
    "signal9_pipeline.settings",
]
FORBIDDEN = ("dagster", "alpaca", "boto3", "botocore")


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_framework_or_client(module):
    probe = (f"import sys, json; import {module}; "
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], module
