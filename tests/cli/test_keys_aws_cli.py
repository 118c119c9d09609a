"""``visor keys create --aws``, and ``keys list|revoke`` with AWS keys: the first command of each test in a fresh
process (as a user runs it; the README's ``visor keys create --name app --aws`` also runs so in
tests/test_readme_commands.py), the rest through ``visor.cli.main.main`` in this one (1 s less each)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography", reason="AWS keys need the 'serve' extra")


@pytest.fixture
def visor(tmp_path, monkeypatch, capsys):
    """``visor ARGS`` with VISOR_HOME in the test's folder: the first call ``python -m visor ARGS`` in a new
    interpreter, later ones in this process; each returns (returncode, stdout, stderr)."""
    from visor.cli.main import main

    monkeypatch.setenv("VISOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VISOR_AWS_MASTER_KEY", raising=False)
    calls = []

    def run(*args: str):
        calls.append(args)
        if len(calls) == 1:
            return subprocess.run([sys.executable, "-m", "visor", *args], capture_output=True, text=True, timeout=120)
        capsys.readouterr()
        try:
            rc = main(list(args))
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)

    run.home = tmp_path / "home"
    return run


def _secret(akid: str) -> str | None:
    """The secret the server would check signatures with (the default database, under VISOR_HOME)."""
    from visor.serve.awsauth import AwsKeyStore
    from visor.serve.db import ServiceDB

    with ServiceDB() as db:
        found = AwsKeyStore(db).secret(akid)
    return None if found is None else found[1]


def test_create_aws_prints_a_credentials_fragment(visor):
    proc = visor("keys", "create", "--name", "rekognition", "--aws")
    assert proc.returncode == 0, proc.stderr
    m = re.fullmatch(r"aws_access_key_id = (VKIA[A-Z2-7]{16})\naws_secret_access_key = ([A-Za-z0-9_-]{40})\n",
                     proc.stdout)
    assert m, proc.stdout
    akid, secret = m.groups()
    errs = proc.stderr.splitlines()
    assert errs[0] == f"created AWS key 'rekognition' ({akid}). Store the secret now: it cannot be shown again."
    assert errs[1].startswith("the AWS secrets are encrypted under the new master key") and len(errs) == 2
    assert secret not in proc.stderr
    master = visor.home / "aws-master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    assert _secret(akid) == secret  # what the server will check signatures with

    again = visor("keys", "create", "--name", "second", "--aws")
    assert again.returncode == 0 and len(again.stderr.splitlines()) == 1  # the master key already exists
    dup = visor("keys", "create", "--name", "rekognition", "--aws")
    assert (dup.returncode, dup.stdout) == (1, "")  # KeyExists: HTTP 409
    assert dup.stderr.strip() == ("visor: error: KeyExists: an AWS key named 'rekognition' already exists; "
                                  "revoke it first or pick another name")


def test_list_and_revoke_both_kinds(visor):
    bearer = visor("keys", "create", "--name", "ci").stdout.strip()
    akid = visor("keys", "create", "--name", "aws-ci", "--aws").stdout.split()[2]
    clash = visor("keys", "create", "--name", "ci", "--aws")
    assert clash.returncode == 1 and "an API key named 'ci' already exists" in clash.stderr

    listed = visor("keys", "list")
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "PREFIX", "CREATED", "STATUS"]
    assert lines[1].split()[:3] == ["ci", "bearer", bearer[:12] + "..."] and lines[1].endswith("active")
    assert lines[2].split()[:3] == ["aws-ci", "aws", akid] and lines[2].endswith("active") and len(lines) == 3

    revoked = visor("keys", "revoke", "aws-ci")
    assert (revoked.returncode, revoked.stdout) == (0, f"revoked aws-ci (AWS key {akid})\n")
    assert _secret(akid) is None
    assert visor("keys", "revoke", "ci").stdout == f"revoked ci ({bearer[:12]}...)\n"
    missing = visor("keys", "revoke", "aws-cj")
    assert missing.returncode == 2  # KeyNotFound: HTTP 404
    assert missing.stderr.strip() == "visor: error: KeyNotFound: no key named 'aws-cj'. Did you mean 'aws-ci'?"

    # the revoked AWS key's name taken by a bearer key: revoke NAME revokes the active one
    bearer2 = visor("keys", "create", "--name", "aws-ci").stdout.strip()
    assert visor("keys", "revoke", "aws-ci").stdout == f"revoked aws-ci ({bearer2[:12]}...)\n"

    docs = json.loads(visor("keys", "list", "--json").stdout)
    assert [(d["name"], d["type"], d["prefix"], d["revoked"]) for d in docs] == [
        ("ci", "bearer", bearer[:12], True), ("aws-ci", "aws", akid, True), ("aws-ci", "bearer", bearer2[:12], True)]
    assert docs[1]["access_key_id"] == akid and "secret" not in json.dumps(docs)


def test_missing_master_key_is_one_line_not_a_traceback(visor):
    akid = visor("keys", "create", "--name", "a", "--aws").stdout.split()[2]
    (visor.home / "aws-master.key").unlink()
    proc = visor("keys", "create", "--name", "b", "--aws")
    assert (proc.returncode, proc.stdout) == (2, "")  # ConfigError: HTTP 400
    assert proc.stderr.startswith("visor: error: ConfigError: AWS keys exist but their master key is missing: restore ")
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (visor.home / "aws-master.key").exists()
    assert akid in visor("keys", "list").stdout
