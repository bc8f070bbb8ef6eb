"""The run task's IAM policy allows every AWS call the pipeline makes, on its own resources, and nothing more.

The whole pipeline (sync, sensor and pollenation, a bars partition, an alert, metrics) runs
once in a fresh process that records every AWS API call; each call must be allowed by
deploy/iam/run-task-policy.json with the placeholders filled in, on the resource it names,
and each action the policy grants must have been used.
"""

from __future__ import annotations

import fnmatch
import json
import os
import string
import subprocess
import sys
from datetime import date, timedelta

import boto3
import exchange_calendars as xcals
import pytest

from signal9_pipeline.settings import Settings
from signal9_pipeline_tests.conftest import PROJECT_ROOT
from signal9_pipeline_tests.deploy.deployment import DEPLOY
from signal9_pipeline_tests.support import put_universe, small_universe

pytestmark = pytest.mark.slow

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's account
IAM_PREFIX = {"DynamoDB": "dynamodb", "Secrets Manager": "secretsmanager", "EventBridge": "events",
              "CloudWatch": "cloudwatch", "SNS": "sns", "S3": "s3"}
# S3 API operations authorised by a differently named action.
S3_ACTIONS = {"HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket"}


def _policy(env: dict[str, str]) -> dict:
    template = string.Template((DEPLOY / "iam" / "run-task-policy.json").read_text())
    settings = Settings.from_env()
    return json.loads(template.substitute({**env, "AWS_REGION": REGION, "AWS_ACCOUNT_ID": ACCOUNT,
                                           "ALPACA_SECRET_ID": settings.alpaca_secret_id,
                                           "SIGNAL9_METRICS_NAMESPACE": settings.metrics_namespace}))


def _action(call: dict) -> str:
    prefix = IAM_PREFIX[call["service"]]
    operation = S3_ACTIONS.get(call["operation"], call["operation"]) if prefix == "s3" else call["operation"]
    return f"{prefix}:{operation}"


def _resources(call: dict) -> list[str]:
    """The ARNs an API call acts on, as IAM evaluates them."""
    params, service = call["params"], IAM_PREFIX[call["service"]]
    if service == "dynamodb":
        tables = [params["TableName"]] if "TableName" in params else list(params["RequestItems"])
        suffix = f"/index/{params['IndexName']}" if "IndexName" in params else ""
        return [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{t}{suffix}" for t in tables]
    if service == "secretsmanager":
        # AWS appends 6 characters
        return [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{params['SecretId']}-AbCdEf"]
    if service == "events":
        return [f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{e.get('EventBusName', 'default')}"
                for e in params["Entries"]]
    if service == "sns":
        return [params["TopicArn"]]
    if service == "s3":
        return [f"arn:aws:s3:::{params['Bucket']}" + (f"/{params['Key']}" if "Key" in params else "")]
    return ["*"]


def _allowed(policy: dict, call: dict) -> bool:
    action = _action(call)
    for statement in policy["Statement"]:
        if action not in statement["Action"]:
            continue
        if not all(any(fnmatch.fnmatchcase(arn, pattern) for pattern in statement["Resource"])
                   for arn in _resources(call)):
            continue
        namespace = statement.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace")
        if namespace is None or call["params"].get("Namespace") == namespace:
            return True
    return False


def test_policy_allows_exactly_what_the_pipeline_calls(bars_env, default_universe, monkeypatch):
    put_universe(bars_env, small_universe(default_universe, n=30))
    bucket = "signal9-policy-check"
    boto3.client("s3").create_bucket(Bucket=bucket)
    topic_arn = boto3.client("sns").create_topic(Name=bars_env["SIGNAL9_ALERTS_TOPIC"])["TopicArn"]
    env = {**os.environ, "SIGNAL9_IO_MANAGER_BUCKET": bucket, "DAGSTER_S3_BUCKET": bucket,
           "SIGNAL9_ALERTS_TOPIC": topic_arn}
    day = xcals.get_calendar("XNYS").date_to_session(date.today() - timedelta(days=30),
                                                     direction="previous").strftime("%Y-%m-%d")
    done = subprocess.run([sys.executable, "-m", "signal9_pipeline_tests.deploy.aws_calls", day], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    calls = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    policy = _policy(env)
    refused = sorted({f"{_action(c)} on {_resources(c)}" for c in calls if not _allowed(policy, c)})
    assert not refused, refused
    used = {_action(c) for c in calls}
    granted = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"dynamodb:BatchWriteItem", "events:PutEvents", "cloudwatch:PutMetricData", "secretsmanager:GetSecretValue",
            "sns:Publish", "s3:PutObject"} <= used
    assert granted - used == set(), f"the policy grants actions the pipeline never uses: {sorted(granted - used)}"
