"""The dev stack: the Alpaca sandbox (`sandbox`) and the local stack around it (`local`).

It serves `make run`, `make dev` and the tests. It imports the product package `signal9_pipeline`; the product
never imports it, and the image never contains it (deploy/Dockerfile copies `signal9_pipeline` alone).
"""
