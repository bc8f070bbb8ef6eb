"""The local stack (sandbox, dynalite, moto): `python -m signal9_pipeline.local up|down|status|provision|run`."""
