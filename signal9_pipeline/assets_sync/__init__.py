"""The daily asset sync: Alpaca's asset list into the DynamoDB assets table."""
