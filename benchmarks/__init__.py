"""`python -m benchmarks`: the figures in BENCHMARKS.md, measured against a private redis-server.

One module per benchmark; each returns a `harness.Section` of rows, each row a figure with its
spread over repeated runs and its ratio to a baseline measured in the same run.
"""
