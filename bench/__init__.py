"""Mercurio's benchmark: ingest and stream-processing throughput, and DynamoDB request units.

Run it with `make bench` or `python -m bench.run --help`; results are in docs/PERFORMANCE.md.
"""
