"""The inbound side: everything between a client's socket and the forwarder.

- `run`: starting the server (`start_server`), draining it, the event loop's error reporter.
- `listener`: connections, their limits and the watchdog that enforces them; parser errors.
- `front_door`: every request's entry: request-line checks, client key, `/_proxy/` routing,
  the access line.
- `endpoints`: the proxy's own `/_proxy/health`, `ready` and `metrics`.
- `answers`: the one writer of every answer.
- `app`: the proxy's application (`create_app`): profiles, metrics, redactor, lifetime.
- `workers`: several processes on one port.
- `eventloop`: the event loop the proxy serves on.
"""
