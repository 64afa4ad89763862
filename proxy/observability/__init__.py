"""What operators see.

- `logging_setup`: logging for the process, text or JSON lines, and the access line's writers.
- `logsink`: the batched handler that writes log lines to stderr.
- `redact`: secret redaction for every log line and quoted error text.
- `access`: what the access line says about a request (`AccessFacts`), filled in as it goes.
- `request_ids`: the request id a client sent in X-Request-Id, or a new one.
- `metrics`: the Prometheus metrics, plain counts rendered at scrape time.
- `worker_metrics`: the other workers' metrics added up at scrape time (`listen.workers: N`).
"""
