"""``visor keys create|list|revoke``: the service's API keys.

A key is printed once, when created (on stdout, alone, so scripts can capture it); only its
SHA-256 is stored. The database defaults to ``$VISOR_HOME/serve.db``, or
``~/.local/share/visor/serve.db`` when VISOR_HOME is unset; ``--db`` takes a file or a
SQLAlchemy URL such as ``postgresql://user@host/visor``.

``--aws`` creates an AWS access key for the Rekognition-compatible API instead (signed requests,
:mod:`visor.serve.awsauth`): stdout gets the two lines of an ``~/.aws/credentials`` profile, and
the secret is stored encrypted under the master key (``$VISOR_HOME/aws-master.key`` or
``VISOR_AWS_MASTER_KEY``). ``list`` shows both kinds (TYPE bearer or aws); ``revoke NAME``
revokes whichever kind has the name.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _aws_store(db):
    from visor.serve.awsauth import AwsKeyStore

    return AwsKeyStore(db)


def _create_aws(args: argparse.Namespace) -> int:
    from visor.serve.awsauth import MASTER_KEY_ENV, master_key_path

    store = _store(args)
    master, had_master = master_key_path(), master_key_path().exists()
    try:
        record, access_key_id, secret = _aws_store(store.db).create(args.name)
    finally:
        store.db.close()
    print(f"aws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}", flush=True)
    print(f"created AWS key {record.name!r} ({access_key_id}). Store the secret now: it cannot be shown again.",
          file=sys.stderr)
    if not had_master and master.exists() and not os.environ.get(MASTER_KEY_ENV):
        print(f"the AWS secrets are encrypted under the new master key {master}: back it up apart from the "
              "database", file=sys.stderr)
    return ExitCode.OK


def cmd_create(args: argparse.Namespace) -> int:
    if args.aws:
        return _create_aws(args)
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
        keys = [("bearer", k.prefix + "...", k, {**k.to_dict(), "type": "bearer"}) for k in store.list()]
        keys += [("aws", k.access_key_id, k, {**k.to_dict(), "prefix": k.access_key_id, "type": "aws"})
                 for k in _aws_store(store.db).list()]
    finally:
        store.db.close()
    keys.sort(key=lambda t: t[2].created_at)  # stable: each kind stays in its own order
    if args.json:
        print(json.dumps([doc for *_, doc in keys], indent=2))
        return ExitCode.OK
    if not keys:
        print("no API keys; create one with 'visor keys create --name NAME' (--aws for an AWS access key)")
        return ExitCode.OK
    rows = [("NAME", "TYPE", "PREFIX", "CREATED", "STATUS")]
    rows += [(k.name, kind, shown, k.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
              "revoked" if k.revoked else "active") for kind, shown, k, _ in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r[:-1])) + "  " + r[-1])
    return ExitCode.OK


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke the bearer key, the AWS key, or both, called NAME: the active ones if any."""
    from visor.config import suggest
    from visor.serve.keys import KeyNotFound

    store = _store(args)
    try:
        aws = _aws_store(store.db)
        listed = {"bearer": store.list(), "aws": aws.list()}
        found = {kind: k for kind, keys in listed.items() for k in keys if k.name == args.name}
        if not found:
            names = [k.name for keys in listed.values() for k in keys]
            raise KeyNotFound(f"no key named {args.name!r}.{suggest(args.name, names)}".rstrip("."))
        active = {kind: k for kind, k in found.items() if not k.revoked} or found
        done = []
        if "bearer" in active:
            record = store.revoke(args.name)
            done.append(f"revoked {record.name} ({record.prefix}...)")
        if "aws" in active:
            record = aws.revoke(args.name)
            done.append(f"revoked {record.name} (AWS key {record.access_key_id})")
    finally:
        store.db.close()
    print("\n".join(done))
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor keys ...`` to the command parser."""
    keys = sub.add_parser("keys", help="create, list and revoke API keys of the service",
                          description="API keys for 'visor serve'. Run 'visor keys COMMAND --help'.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    p = ksub.add_parser("create", help="create a key (shown once)",
                        description="Create an API key called NAME and print it on stdout. Only its hash is "
                                    "stored: copy it now, it cannot be shown again. With --aws, an AWS access key "
                                    "(for the Rekognition API): its secret is stored encrypted under "
                                    "$VISOR_HOME/aws-master.key (or VISOR_AWS_MASTER_KEY), never shown again.")
    p.add_argument("--name", required=True, help="a name for the key, unique among the active keys")
    p.add_argument("--aws", action="store_true",
                   help="an AWS access key id and secret for the Rekognition-compatible API (requests signed with "
                        "AWS Signature Version 4, as boto3 does): printed as two ~/.aws/credentials lines")
    add_db_argument(p)
    p.set_defaults(func=cmd_create)

    p = ksub.add_parser("list", help="list the keys (names and prefixes, never the keys)",
                        description="List every key: name, type (bearer or aws), first characters (an AWS "
                                    "key's whole access key id), creation time (UTC) and status.")
    add_output_options(p, json="document")
    add_db_argument(p)
    p.set_defaults(func=cmd_list)

    p = ksub.add_parser("revoke", help="revoke a key", description="Revoke the key called NAME (bearer or AWS); it "
                                                                   "stops working at once (an AWS key within 30 s on "
                                                                   "a running server). Its name can then be reused.")
    p.add_argument("name", metavar="NAME", help="the key's name")
    add_db_argument(p)
    p.set_defaults(func=cmd_revoke)
