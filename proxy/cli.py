"""The command line: argument parsing, logging set-up and exit codes (PRODUCT.md "Command line")."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.config import (
    ConfigError,
    config_path_from,
    env_name,
    file_mode_warning,
    load_settings,
    render_masked,
)
from proxy.logging_setup import configure_logging
from proxy.redact import Redactor
from proxy.settings import Settings

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
COMMANDS = ("run", "demo", "emulator", "check-config")


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
    run.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, type=str.upper)

    check = commands.add_parser("check-config", help="validate the config and print it masked")
    check.add_argument(
        "--config", metavar="FILE", help="YAML config (default: $SPAPI_PROXY_CONFIG)"
    )
    return parser


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] not in (*COMMANDS, "-h", "--help", "--version"):
        arguments.insert(0, "run")  # a bare `spapi-proxy [--config …]` runs the proxy
    args = build_parser().parse_args(arguments)
    if args.command == "check-config":
        return check_config(args)
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


def check_config(args: argparse.Namespace) -> int:
    try:
        settings = load(args)
    except ConfigError as error:
        print(f"spapi-proxy: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(render_masked(settings), end="")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from proxy.app import create_app

    try:
        settings = load(args)
    except ConfigError as error:
        print(f"spapi-proxy: {error}", file=sys.stderr)
        return EXIT_USAGE
    redactor = Redactor()
    configure_logging(args.log_level, redactor)
    config_path = config_path_from(args.config, os.environ)
    warning = config_path and file_mode_warning(config_path, settings)
    if warning:
        logger.warning("%s", warning)
    logger.info(
        "spapi-proxy %s listening on http://%s:%d, forwarding to %s (signing: %s)",
        __version__,
        settings.listen.host,
        settings.listen.port,
        settings.upstream.base_url,
        "SigV4" if settings.aws else "off, LWA only",
    )
    web.run_app(
        create_app(settings, redactor=redactor),
        host=settings.listen.host,
        port=settings.listen.port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.listen.drain_timeout_s,
        # A client that disconnects cancels its handler, which closes the upstream request.
        handler_cancellation=True,
    )
    return EXIT_OK
