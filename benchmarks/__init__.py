"""Benchmarks: the SigV4 micro-benchmark and the proxy-vs-reference load benchmark."""
