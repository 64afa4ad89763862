"""What operators see: log set-up and the batched log sink, secret redaction for every log line
and quoted error text, and the Prometheus metrics."""
