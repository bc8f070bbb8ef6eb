"""The local stack (sandbox, dynalite, moto): `python -m signal9_devstack.local up|down|status|provision|run`."""
