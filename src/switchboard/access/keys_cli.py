"""`switchboard keys ...` and `switchboard usage`: key management and the usage table from the shell.

These commands open the store named in the config file directly, so they work with no server
running. Running servers see a change within `keys.CACHE_TTL_S` (one second).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson

from ..config import Config, ConfigError
from ..errors import GatewayError
from ..store import Store, UsageQuery, UsageRow, VirtualKey, build_store
from .keys import KeyService, parse_expiry, validate_key_fields

__all__ = ["add_parsers"]

Loader = Callable[[str | None], Config]


def add_parsers(sub: Any, load: Loader) -> None:
    """Register `keys` and `usage` on the `switchboard` parser; `load` reads the config (exits on errors)."""
    keys = sub.add_parser("keys", help="create, list, update and revoke virtual API keys (works offline)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", help="config file (default ./switchboard.yaml)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def fields(p: argparse.ArgumentParser, creating: bool) -> None:
        p.add_argument("--name", required=creating)
        p.add_argument("--models", help="comma-separated model/agent names or glob patterns (default: all)")
        p.add_argument("--rpm", type=int, help="requests per minute (0: no limit)")
        p.add_argument("--tpm", type=int, help="tokens per minute (0: no limit)")
        p.add_argument("--budget", help="budget in USD per period ('none': no budget)")
        p.add_argument("--budget-period", choices=["daily", "weekly", "monthly", "total"])
        p.add_argument("--expires", help="expiry: ISO date/time (UTC) or unix seconds ('none': never)")
        p.add_argument("--role", choices=["viewer", "admin", "none"],
                       help="admin API / dashboard access: viewer (read), admin (full), none (default)")

    create = keys_sub.add_parser("create", help="create a key; its secret is printed once")
    common(create)
    fields(create, creating=True)
    create.set_defaults(func=lambda a: _run(a, load, _create))
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    common(listing)
    listing.set_defaults(func=lambda a: _run(a, load, _list))
    update = keys_sub.add_parser("update", help="change a key's limits, models, budget or expiry")
    common(update)
    update.add_argument("id")
    fields(update, creating=False)
    update.set_defaults(func=lambda a: _run(a, load, _update))
    revoke = keys_sub.add_parser("revoke", help="revoke a key (it stops working within a second)")
    common(revoke)
    revoke.add_argument("id")
    revoke.set_defaults(func=lambda a: _run(a, load, _revoke))

    usage = sub.add_parser("usage", help="print the usage log with totals (works offline)")
    common(usage)
    usage.add_argument("--key", help="key id")
    usage.add_argument("--model")
    usage.add_argument("--since", help="ISO date/time (UTC) or unix seconds")
    usage.add_argument("--until", help="ISO date/time (UTC) or unix seconds")
    usage.add_argument("--status", type=int)
    usage.add_argument("--limit", type=int, default=50)
    usage.set_defaults(func=lambda a: _run(a, load, _usage))


def _run(args: argparse.Namespace, load: Loader,
         command: Callable[[argparse.Namespace, Store], Coroutine[Any, Any, int]]) -> int:
    config = load(args.config)

    async def main() -> int:
        store = build_store(config.store_url, config.base_dir)
        await store.open()
        try:
            return await command(args, store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except GatewayError as err:
        print(f"switchboard: {err.message}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # the store cannot be opened (database down, bad path)
        print(f"switchboard: cannot open the store: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    if args.models is not None:
        body["models"] = args.models
    for name in ("rpm", "tpm"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value or None
    if args.budget is not None:
        try:
            body["budget_usd"] = None if args.budget.lower() == "none" else float(args.budget)
        except ValueError:
            raise GatewayError(400, f"--budget must be a number or 'none', got {args.budget!r}") from None
    if args.budget_period is not None:
        body["budget_period"] = args.budget_period
    if args.role is not None:
        body["role"] = None if args.role == "none" else args.role
    if args.expires is not None:
        body["expires_at"] = None if args.expires.lower() == "none" else _time(args.expires, "--expires")
    return body


def _time(raw: str, param: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return parse_expiry(raw, param)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _key_table(keys: list[VirtualKey]) -> str:
    now = datetime.now(UTC).timestamp()

    def status(k: VirtualKey) -> str:
        if k.revoked:
            return "revoked"
        return "expired" if k.expires_at is not None and k.expires_at <= now else "active"

    rows = [[k.id, k.name, ",".join(k.models), str(k.rpm or "-"), str(k.tpm or "-"),
             "-" if k.budget_usd is None else f"${k.budget_usd:g}/{k.budget_period}", _when(k.expires_at),
             k.role or "-", status(k)] for k in keys]
    return _table(["ID", "NAME", "MODELS", "RPM", "TPM", "BUDGET", "EXPIRES (UTC)", "ROLE", "STATUS"], rows)


def _print_json(obj: Any) -> None:
    print(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


async def _create(args: argparse.Namespace, store: Store) -> int:
    key, secret = await KeyService(store).create(validate_key_fields(_fields(args), creating=True))
    if args.json:
        _print_json({**key.public(), "key": secret})
    else:
        print(_key_table([key]))
        print(f"\nsecret: {secret}\nThis is the only time the secret is shown; store it now.")
    return 0


async def _list(args: argparse.Namespace, store: Store) -> int:
    keys = await store.list_keys()
    if args.json:
        _print_json([k.public() for k in keys])
    else:
        print(_key_table(keys))
    return 0


async def _change(args: argparse.Namespace, store: Store, changes: dict[str, Any]) -> int:
    key = await KeyService(store).update(args.id, changes)
    if key is None:
        print(f"switchboard: no API key with id {args.id}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(key.public())
    else:
        print(_key_table([key]))
    return 0


async def _update(args: argparse.Namespace, store: Store) -> int:
    return await _change(args, store, validate_key_fields(_fields(args), creating=False))


async def _revoke(args: argparse.Namespace, store: Store) -> int:
    return await _change(args, store, {"revoked": True})


async def _usage(args: argparse.Namespace, store: Store) -> int:
    query = UsageQuery(key_id=args.key, model=args.model, status=args.status, limit=args.limit,
                       since=_time(args.since, "--since") if args.since else None,
                       until=_time(args.until, "--until") if args.until else None)
    rows, totals = await store.query_usage(query)
    if args.json:
        _print_json({"data": [r.public() for r in rows], "totals": totals.public()})
        return 0

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    def cost(r: UsageRow) -> str:
        return "-" if r.cost_usd is None else f"{r.cost_usd:.6f}" + ("~" if r.estimated else "")

    table = [[_when(r.ts), r.request_id, r.key_id or "-", r.model or "-", r.provider or "-", str(r.status),
              str(r.prompt_tokens), str(r.cached_tokens), str(r.cache_write_tokens), str(r.completion_tokens),
              str(r.reasoning_tokens), cost(r), ms(r.latency_ms), ms(r.ttft_ms)]
             for r in rows]
    print(_table(["TIME (UTC)", "REQUEST", "KEY", "MODEL", "PROVIDER", "STATUS", "PROMPT", "CACHED", "CACHE WRITE",
                  "COMPLETION", "REASONING", "COST $", "LATENCY ms", "TTFT ms"], table))
    notes = [f"{totals.unpriced} without a price (cost -)"] if totals.unpriced else []
    if totals.estimated:
        notes.append(f"{totals.estimated} estimated (cost ~: the stream ended before the upstream's usage)")
    print(f"\ntotal: {totals.requests} requests, {totals.prompt_tokens} prompt + {totals.completion_tokens} "
          f"completion tokens ({totals.cached_tokens} cached, {totals.cache_write_tokens} cache write, "
          f"{totals.reasoning_tokens} reasoning), ${totals.cost_usd:.6f}"
          + (f" (showing the latest {len(rows)})" if len(rows) < totals.requests else "")
          + ("; " + "; ".join(notes) if notes else ""))
    return 0
