"""SNS alerts for the on-call engineer (topic SIGNAL9_ALERTS_TOPIC: a name or an ARN)."""

from __future__ import annotations

from typing import Optional

import boto3
import dagster as dg

from signal9_pipeline import settings


class AlertsResource(dg.ConfigurableResource):
    topic: Optional[str] = None

    def topic_arn(self) -> str:
        topic = self.topic or settings.get("SIGNAL9_ALERTS_TOPIC")
        if topic.startswith("arn:"):
            return topic
        return boto3.client("sns").create_topic(Name=topic)["TopicArn"]  # idempotent: returns the existing ARN

    def publish(self, subject: str, message: str) -> str:
        return boto3.client("sns").publish(TopicArn=self.topic_arn(), Subject=subject[:100], Message=message)["MessageId"]
