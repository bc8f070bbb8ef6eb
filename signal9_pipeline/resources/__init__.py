"""Resources: the only modules that do I/O (Alpaca, DynamoDB, EventBridge, CloudWatch)."""
