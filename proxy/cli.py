"""The command line: argument parsing, logging set-up and exit codes (README "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from proxy import __version__
from proxy.config.environment import config_path_from, env_name
from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.render import file_mode_warning, render_masked
from proxy.config.settings import LOG_LEVELS, Settings
from proxy.observability.logging_setup import configure_logging
from proxy.observability.redact import Redactor
from proxy.server import eventloop

if TYPE_CHECKING:
    from proxy.emulator import EmulatorConfig

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
COMMANDS = ("run", "demo", "emulator", "check-config", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spapi-proxy",
        description="Local signing reverse proxy for Amazon's Selling Partner API.",
    )
    parser.add_argument("--version", action="version", version=f"spapi-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the proxy (the default command)")
    run.add_argument("--config", metavar="FILE", help="YAML config (default: $SPAPI_PROXY_CONFIG)")
    run.add_argument("--host", help="listen address (overrides listen.host)")
    run.add_argument("--port", type=int, help="listen port (overrides listen.port)")
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.upper,
        help="overrides logging.level (default INFO)",
    )

    demo = commands.add_parser(
        "demo", help="the proxy in front of the offline emulator; no credentials needed"
    )
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="proxy listen address (default 127.0.0.1; 0.0.0.0 in a container); no token needed",
    )
    demo.add_argument("--port", type=port_number, default=8000, help="proxy port (default 8000)")
    add_emulator_arguments(demo)

    emulator = commands.add_parser(
        "emulator", help="the offline emulator alone (LWA + STS + SP-API sandbox on one port)"
    )
    emulator.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    emulator.add_argument("--port", type=port_number, default=9000, help="port (default 9000)")
    add_emulator_arguments(emulator)

    check = commands.add_parser("check-config", help="validate the config and print it masked")
    check.add_argument(
        "--config", metavar="FILE", help="YAML config (default: $SPAPI_PROXY_CONFIG)"
    )

    doctor = commands.add_parser(
        "doctor", help="check the config, each credential and one SP-API call; explain failures"
    )
    doctor.add_argument(
        "--config", metavar="FILE", help="YAML config (default: $SPAPI_PROXY_CONFIG)"
    )
    # WARNING: the verdict lines are the output; the proxy's INFO lines would bury them.
    doctor.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS, type=str.upper)
    return parser


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        metavar="DIR",
        help="also serve every static case of the official SP-API models below DIR",
    )
    parser.add_argument(
        "--throttle",
        choices=("sandbox", "models"),
        default="sandbox",
        help="sandbox: 5/s, burst 15 for every operation, as Amazon's sandbox (default); "
        "models: each operation's own rate and burst from the models' usage plans",
    )
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, type=str.upper)


def emulator_config_from(args: argparse.Namespace) -> EmulatorConfig:
    from proxy.emulator import EmulatorConfig

    return EmulatorConfig(models_dir=args.models, throttle=args.throttle)


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] not in (*COMMANDS, "-h", "--help", "--version"):
        arguments.insert(0, "run")  # a bare `spapi-proxy [--config …]` runs the proxy
    args = build_parser().parse_args(arguments)
    if args.command == "check-config":
        return check_config(args)
    if args.command == "demo":
        return demo(args)
    if args.command == "emulator":
        return emulator(args)
    if args.command == "doctor":
        return doctor(args)
    return run(args)


def load(args: argparse.Namespace) -> Settings:
    """Settings from file and environment; --host/--port act as the matching variables so they
    get the same validation (the non-loopback guard included)."""
    environ = dict(os.environ)
    if getattr(args, "host", None):
        environ[env_name("listen", "host")] = args.host
    if getattr(args, "port", None):
        environ[env_name("listen", "port")] = str(args.port)
    return load_settings(config_path_from(args.config, environ), environ)


def load_or_explain(args: argparse.Namespace) -> Settings | None:
    """The settings, or None after printing why the configuration is refused."""
    try:
        return load(args)
    except ConfigError as error:
        print(f"spapi-proxy: {error}", file=sys.stderr)
        if args.command == "run" and error.key.startswith("lwa."):
            print(NO_CREDENTIALS_HINT, file=sys.stderr)
        return None


# A first `spapi-proxy run` usually fails on the missing LWA credentials: say where to go next.
NO_CREDENTIALS_HINT = (
    "No SP-API credentials yet? `spapi-proxy demo` runs the proxy in front of an offline "
    "emulator with none; the README's Configuration section says which values `run` needs."
)


def check_config(args: argparse.Namespace) -> int:
    settings = load_or_explain(args)
    if settings is None:
        return EXIT_USAGE
    print(render_masked(settings), end="")
    return EXIT_OK


async def serve_proxy(
    settings: Settings, redactor: Redactor, worker_metrics_dir: str | None = None
) -> None:
    """Serve until signalled; with `worker_metrics_dir` (several workers) this worker's metrics
    are offered to, and added up with, the other workers' through that directory."""
    from proxy.observability.worker_metrics import WorkerMetrics
    from proxy.server.app import create_app
    from proxy.server.run import serve_until_signalled, settle_garbage_collector, start_server

    app = create_app(settings, redactor=redactor)
    listen = settings.listen
    server = await start_server(
        app, listen.host, listen.port, listen.drain_timeout_s, reuse_port=listen.workers > 1
    )
    if worker_metrics_dir is not None:
        app.worker_metrics = WorkerMetrics(worker_metrics_dir, app.metrics)
        await app.worker_metrics.start()
    settle_garbage_collector()
    try:
        await serve_until_signalled(server)
    finally:
        if app.worker_metrics is not None:
            await app.worker_metrics.stop()


def run(args: argparse.Namespace) -> int:
    settings = load_or_explain(args)
    if settings is None:
        return EXIT_USAGE
    redactor = Redactor()
    log_level = args.log_level or settings.logging.level
    configure_logging(log_level, redactor, settings.logging.format)
    config_path = config_path_from(args.config, os.environ)
    warning = config_path and file_mode_warning(config_path, settings)
    if warning:
        logger.warning("%s", warning)
    logger.info(
        "spapi-proxy %s listening on http://%s:%d (%d worker%s), forwarding to %s (signing: %s)",
        __version__,
        settings.listen.host,
        settings.listen.port,
        settings.listen.workers,
        "" if settings.listen.workers == 1 else "s",
        settings.upstream.base_url,
        "SigV4" if settings.aws else "off, LWA only",
    )

    # Several workers: one directory for their metrics sockets, made before they fork.
    many = settings.listen.workers > 1
    worker_metrics_dir = tempfile.mkdtemp(prefix="spapi-proxy-metrics-") if many else None

    def serve() -> int:
        try:
            eventloop.run(
                serve_proxy(settings, redactor, worker_metrics_dir), settings.listen.busy_poll_us
            )
        except OSError as error:  # typically the port is taken
            listen = settings.listen
            logger.error("cannot listen on %s:%d: %s", listen.host, listen.port, error)
            return EXIT_FAILURE
        return EXIT_OK

    if settings.listen.workers == 1:
        return serve()
    from proxy.server.workers import run_workers

    try:
        return run_workers(settings.listen.workers, serve)
    finally:
        if worker_metrics_dir is not None:
            shutil.rmtree(worker_metrics_dir, ignore_errors=True)


def doctor(args: argparse.Namespace) -> int:
    from proxy.doctor import doctor_main

    redactor = Redactor()  # shared: log lines and verdict lines mask the same secrets
    configure_logging(args.log_level, redactor)
    return doctor_main(args.config, os.environ, redactor=redactor)


def demo(args: argparse.Namespace) -> int:
    from proxy.demo import DemoError, serve_demo

    if not models_dir_ok(args.models):
        return EXIT_USAGE
    redactor = Redactor()
    configure_logging(args.log_level, redactor)
    try:
        asyncio.run(
            serve_demo(
                args.port,
                redactor=redactor,
                host=args.host,
                emulator_config=emulator_config_from(args),
            )
        )
    except DemoError as error:
        print(f"spapi-proxy demo: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def emulator(args: argparse.Namespace) -> int:
    from proxy.demo import cannot_listen
    from proxy.emulator import EmulatorConfig, run_emulator

    if not models_dir_ok(args.models):
        return EXIT_USAGE
    redactor = Redactor()
    defaults = EmulatorConfig()
    for secret in (defaults.client_secret, defaults.refresh_token, defaults.aws_secret_access_key):
        redactor.add(secret, configured=True)
    configure_logging(args.log_level, redactor)
    try:
        return run_emulator(args.host, args.port, config=emulator_config_from(args))
    except OSError as error:
        reason = cannot_listen("the emulator", args.host, args.port, error)
        print(f"spapi-proxy emulator: {reason}", file=sys.stderr)
        return EXIT_FAILURE


def models_dir_ok(models: str | None) -> bool:
    if models is None or os.path.isdir(models):
        return True
    print(f"spapi-proxy: --models {models}: no such directory", file=sys.stderr)
    return False
