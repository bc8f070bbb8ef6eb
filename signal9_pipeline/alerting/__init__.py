"""Alerting: CloudWatch alarms on the pipeline's metrics and the Dagster run-failure sensor."""
