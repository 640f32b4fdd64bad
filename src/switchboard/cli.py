"""The `switchboard` command: `serve`, `check-config`, `keys ...` and `usage`."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from .config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from .app import SwitchboardApp

__all__ = ["main"]


def _load(path: str | None) -> Config:
    try:
        return load_config(path or "switchboard.yaml")
    except ConfigError as exc:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _build_app(config: Config) -> SwitchboardApp:
    """The app; building it also validates what the YAML alone does not (agent files)."""
    from .app import create_app

    try:
        return create_app(config)
    except ConfigError as exc:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .gc_tuning import tune_gc_for_serving
    from .server import ServeOptions, serve

    _setup_logging(args.log_level)
    config = _load(args.config)
    options = ServeOptions(
        host=args.host or config.server.host,
        port=args.port if args.port is not None else config.server.port,
        workers=max(1, args.workers),
        grace_s=config.server.shutdown_grace_s,
        send_timeout_s=config.server.send_timeout_s,
        extra_ports=tuple(f.port for f in config.facades.values() if f.port is not None),
    )
    app = _build_app(config)  # also validates what the YAML alone does not, before any worker starts

    def worker_app() -> SwitchboardApp:  # each forked worker builds its own gateway (connections, threads)
        built = create_app(config)
        tune_gc_for_serving()
        return built

    if options.workers == 1:
        tune_gc_for_serving()
    return serve(options, worker_app, app if options.workers == 1 else None)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.path)
    logging.getLogger("switchboard").setLevel(logging.ERROR)  # warnings are printed below, once
    app = _build_app(config)
    print(f"config OK: {args.path or 'switchboard.yaml'}")
    s = config.server
    print(f"server: http://{s.host}:{s.port}  prefixes: {', '.join(['/v1', *[p + '/v1' for p in s.path_prefixes]])}")
    print(f"auth: {'master key set' if config.auth.master_key else 'DISABLED (no master_key)'}; "
          f"{len(config.auth.keys)} static key(s)")
    for name, p in config.providers.items():
        print(f"provider {name}: type={p.type} base_url={p.base_url} keys={len(p.keys)} timeout={p.timeout_s}s "
              f"retries={p.retries.max} max_in_flight={p.max_in_flight} queue={p.queue}")
    for name, m in config.models.items():
        chain = " -> ".join([m.route, *m.fallbacks])
        print(f"model {name}: {chain}")
    if config.agents_dir:
        agents = app.gateway.agents.registry.agents if app.gateway.agents is not None else {}
        print(f"agents: {config.agents_dir}: {', '.join(sorted(agents)) or 'none'}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description="OpenAI-compatible gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the gateway")
    serve.add_argument("--config", "-c", help="config file (default ./switchboard.yaml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", help="validate a config and print what it would serve")
    check.add_argument("path", nargs="?")
    check.set_defaults(func=cmd_check_config)
    from .access.keys_cli import add_parsers

    add_parsers(sub, _load)  # `keys ...` and `usage`
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
