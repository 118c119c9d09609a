"""``visor keys create|list|revoke``: the service's API keys.

A key is printed once, when created (on stdout, alone, so scripts can capture it); only its
SHA-256 is stored. The database defaults to ``$VISOR_HOME/serve.db``, or
``~/.local/share/visor/serve.db`` when VISOR_HOME is unset; ``--db`` takes a file or a
SQLAlchemy URL such as ``postgresql://user@host/visor``.
"""

from __future__ import annotations

import argparse
import json
import sys

from visor.cli.common import ExitCode, add_output_options

DB_HELP = ("service database: an SQLite file or a SQLAlchemy URL such as postgresql://user@host/visor "
           "(default $VISOR_HOME/serve.db, else ~/.local/share/visor/serve.db)")


def add_db_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="URL", help=DB_HELP)


def _store(args: argparse.Namespace):
    from visor.serve.db import ServiceDB
    from visor.serve.keys import KeyStore

    return KeyStore(ServiceDB(args.db))


def cmd_create(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        record, key = store.create(args.name)
    finally:
        store.db.close()
    print(key, flush=True)
    print(f"created API key {record.name!r} ({record.prefix}...). Store it now: it cannot be shown again.",
          file=sys.stderr)
    return ExitCode.OK


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        keys = store.list()
    finally:
        store.db.close()
    if args.json:
        print(json.dumps([k.to_dict() for k in keys], indent=2))
        return ExitCode.OK
    if not keys:
        print("no API keys; create one with 'visor keys create --name NAME'")
        return ExitCode.OK
    rows = [("NAME", "PREFIX", "CREATED", "STATUS")]
    rows += [(k.name, k.prefix + "...", k.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
              "revoked" if k.revoked else "active") for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r[:-1])) + "  " + r[-1])
    return ExitCode.OK


def cmd_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        record = store.revoke(args.name)
    finally:
        store.db.close()
    print(f"revoked {record.name} ({record.prefix}...)")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor keys ...`` to the command parser."""
    keys = sub.add_parser("keys", help="create, list and revoke API keys of the service",
                          description="API keys for 'visor serve'. Run 'visor keys COMMAND --help'.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    p = ksub.add_parser("create", help="create a key (shown once)",
                        description="Create an API key called NAME and print it on stdout. Only its hash is "
                                    "stored: copy it now, it cannot be shown again.")
    p.add_argument("--name", required=True, help="a name for the key, unique among the active keys")
    add_db_argument(p)
    p.set_defaults(func=cmd_create)

    p = ksub.add_parser("list", help="list the keys (names and prefixes, never the keys)",
                        description="List every key: name, first characters, creation time (UTC) and status.")
    add_output_options(p, json="document")
    add_db_argument(p)
    p.set_defaults(func=cmd_list)

    p = ksub.add_parser("revoke", help="revoke a key", description="Revoke the key called NAME; it stops working "
                                                                   "at once. Its name can then be reused.")
    p.add_argument("name", metavar="NAME", help="the key's name")
    add_db_argument(p)
    p.set_defaults(func=cmd_revoke)
