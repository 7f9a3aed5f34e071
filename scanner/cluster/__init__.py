"""Scans spread over machines with Dask distributed: `scanner worker` on each scanning machine,
Dask's own scheduler, and a coordinator (`scanner TARGETS --cluster ADDR`) that shards the
permutation, hands the shards to the workers as Dask tasks and merges their results."""
