"""The asset sync's tests share the top-level fixtures (`sync_env`) and `signal9_pipeline_tests.support`."""
