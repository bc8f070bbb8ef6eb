"""SNS alerts for the on-call engineer (a topic name or an ARN), on dagster_aws' boto3 configuration."""

from __future__ import annotations

from typing import ClassVar

from dagster_aws.utils import ResourceWithBoto3Configuration

from signal9_pipeline import settings
from signal9_pipeline.resources.configured import FromSettings, boto3_client


class AlertsResource(FromSettings, ResourceWithBoto3Configuration):
    SETTINGS: ClassVar[dict[str, str]] = {"topic": "SIGNAL9_ALERTS_TOPIC"}

    topic: str = settings.default("SIGNAL9_ALERTS_TOPIC")

    def topic_arn(self) -> str:
        if self.topic.startswith("arn:"):
            return self.topic
        return boto3_client(self, "sns").create_topic(Name=self.topic)["TopicArn"]  # idempotent: the existing ARN

    def publish(self, subject: str, message: str) -> str:
        return boto3_client(self, "sns").publish(TopicArn=self.topic_arn(), Subject=subject[:100],
                                                 Message=message)["MessageId"]
