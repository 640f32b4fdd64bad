"""The `switchboard` command: `serve`, `check-config`, `init`, `keys ...` and `usage`.

Which config every command uses: `--config PATH` if given, else `./switchboard.yaml` if it exists,
else the environment (env_config.py: providers from OPENAI_API_KEY, OLLAMA_BASE_URL, ...).
`serve --agent FILE` serves that one agent file on top of it, in place of `agents.dir`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from .app import SwitchboardApp

__all__ = ["main"]

DEFAULT_CONFIG = "switchboard.yaml"


@dataclass(slots=True)
class _Loaded:
    config: Config
    source: str  # the config file, or "(environment)"
    from_environment: bool


def _config_error(exc: ConfigError) -> SystemExit:
    if len(exc.errors) == 1:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
    else:
        print(f"switchboard: {len(exc.errors)} config errors:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
    return SystemExit(2)


def _resolve(path: str | None) -> _Loaded:
    from .env_config import SOURCE, config_from_environment

    try:
        if path is None and not Path(DEFAULT_CONFIG).exists():
            return _Loaded(config_from_environment(), SOURCE, True)
        chosen = path or DEFAULT_CONFIG
        return _Loaded(load_config(chosen), chosen, False)
    except ConfigError as exc:
        raise _config_error(exc) from None


def _load(path: str | None) -> Config:
    return _resolve(path).config


def _print_no_provider_help(loaded: _Loaded) -> None:
    if loaded.from_environment and not loaded.config.providers:
        from .env_config import NO_PROVIDER_HELP

        print("\n" + textwrap.fill(NO_PROVIDER_HELP, 100) + "\n", file=sys.stderr, flush=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _build_app(loaded: _Loaded) -> SwitchboardApp:
    """The app; building it also validates what the YAML alone does not (agent files)."""
    from .app import create_app

    try:
        return create_app(loaded.config)
    except ConfigError as exc:
        _print_no_provider_help(loaded)
        raise _config_error(exc) from None


def _serve_one_agent(loaded: _Loaded, agent: str | None, concurrency: int | None) -> None:
    """`--agent FILE [--concurrency N]`: that file is the only agent, whatever the config's `agents.dir`."""
    if agent is None:
        if concurrency is not None:
            print("switchboard: --concurrency sets the max_in_flight of the --agent file; give --agent too",
                  file=sys.stderr)
            raise SystemExit(2)
        return
    path = Path(agent).resolve()
    if not path.is_file():
        print(f"switchboard: --agent {agent}: no such file", file=sys.stderr)
        raise SystemExit(2)
    if concurrency is not None and concurrency < 1:
        print("switchboard: --concurrency must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    loaded.config.agents_dir = None
    loaded.config.agent_file = path
    loaded.config.agent_max_in_flight = concurrency


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .banner import banner
    from .gc_tuning import tune_gc_for_serving
    from .server import ServeOptions, serve

    _setup_logging(args.log_level)
    loaded = _resolve(args.config)
    _serve_one_agent(loaded, args.agent, args.concurrency)
    config = loaded.config
    options = ServeOptions(
        host=args.host or config.server.host,
        port=args.port if args.port is not None else config.server.port,
        workers=max(1, args.workers),
        grace_s=config.server.shutdown_grace_s,
        send_timeout_s=config.server.send_timeout_s,
        extra_ports=tuple(f.port for f in config.facades.values() if f.port is not None),
    )
    app = _build_app(loaded)  # also validates what the YAML alone does not, before any worker starts
    agents = app.gateway.agents.registry.agents.values() if app.gateway.agents is not None else []
    source = loaded.source if not loaded.from_environment else "none: the environment (no switchboard.yaml here)"
    print(banner(config, source, agents, options.host, options.port), file=sys.stderr, flush=True)
    _print_no_provider_help(loaded)

    def worker_app() -> SwitchboardApp:  # each forked worker builds its own gateway (connections, threads)
        built = create_app(config)
        tune_gc_for_serving()
        return built

    if options.workers == 1:
        tune_gc_for_serving()
    return serve(options, worker_app, app if options.workers == 1 else None)


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = _resolve(args.path)
    config = loaded.config
    logging.getLogger("switchboard").setLevel(logging.ERROR)  # warnings are printed below, once
    app = _build_app(loaded)
    print(f"config OK: {loaded.source}")
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
    if config.agents_dir or config.agent_file:
        agents = app.gateway.agents.registry.agents if app.gateway.agents is not None else {}
        print(f"agents: {config.agent_file or config.agents_dir}: {', '.join(sorted(agents)) or 'none'}")
    from .banner import describe_facade

    for facade in config.facades.values():
        print(f"facade {describe_facade(facade)}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    if loaded.from_environment and not config.providers:
        from .env_config import NO_PROVIDER_HELP

        print("\n" + textwrap.fill(NO_PROVIDER_HELP, 100))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from .starter import write_starter

    directory = Path(args.dir)
    results = write_starter(directory)
    for relative, written in results:
        print(f"{'wrote  ' if written else 'skipped'} {directory / relative}" + ("" if written else " (exists)"))
    print("\nNext: set OPENAI_API_KEY (or edit the providers in switchboard.yaml), then "
          "`switchboard check-config` and `switchboard serve`;\nthe example agent `assistant` answers as a model "
          "(its tools are in agents/toolbox.py).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description="OpenAI-compatible gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the gateway",
                           description="Start the gateway. Config: --config PATH, else ./switchboard.yaml, "
                                       "else the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, OLLAMA_BASE_URL, "
                                       "... see the README).")
    serve.add_argument("--config", "-c", help="config file (default ./switchboard.yaml, else the environment)")
    serve.add_argument("--agent", metavar="FILE", help="serve this one agent file (in place of agents.dir)")
    serve.add_argument("--concurrency", type=int, metavar="N",
                       help="with --agent: requests the agent runs at once (its max_in_flight)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", help="validate a config and print what it would serve")
    check.add_argument("path", nargs="?")
    check.set_defaults(func=cmd_check_config)
    init = sub.add_parser("init", help="write a commented switchboard.yaml and an example agent (never overwrites)")
    init.add_argument("dir", nargs="?", default=".", help="where to write them (default: the working directory)")
    init.set_defaults(func=cmd_init)
    from .access.keys_cli import add_parsers

    add_parsers(sub, _load)  # `keys ...` and `usage`
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
