"""AWS keys and SigV4 verification (visor.serve.awsauth), against requests signed by botocore itself."""

from __future__ import annotations

import base64
import os
import random
import re
import stat
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import select, text, update
from starlette.datastructures import Headers

from storage_backends import run_together  # tests/storage_backends.py
from visor.errors import ConfigError
from visor.serve import awsauth
from visor.serve.awsauth import (
    MASTER_KEY_ENV,
    AwsAuthError,
    AwsKey,
    AwsKeyStore,
    encode_master_key,
    master_key_path,
    verify_sigv4,
)
from visor.serve.db import AwsKeyRow, ServiceDB
from visor.serve.keys import KeyExists, KeyNotFound, KeyStore

MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details.")
NOW = datetime(2026, 12, 7, 12, 15, 0, tzinfo=UTC)
BODY = b'{"Image": {"Bytes": "aGVsbG8="}, "MaxLabels": 10}'
URL = "http://127.0.0.1:8000/"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """VISOR_HOME in the test's folder (the master key file's home), no master key in the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("VISOR_HOME", str(home))
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    return home


@pytest.fixture
def db(db_url, home):
    """A fresh database, once on SQLite and once on PostgreSQL (see the ``db_url`` fixture)."""
    d = ServiceDB(db_url)
    yield d
    d.close()


@pytest.fixture
def store(home, tmp_path):
    d = ServiceDB(f"sqlite:///{tmp_path / 'serve.db'}")
    yield AwsKeyStore(d)
    d.close()


# --------------------------------------------------------------------------- the store


def test_create_list_revoke_and_secret(db, home):
    store = AwsKeyStore(db)
    assert store.list() == [] and store.count_active() == 0
    record, akid, secret = store.create("ci")
    assert re.fullmatch(r"VKIA[A-Z2-7]{16}", akid) and len(akid) == 20
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", secret)
    assert isinstance(record, AwsKey) and (record.name, record.access_key_id, record.revoked) == ("ci", akid, False)
    assert record.to_dict() == {"id": record.id, "name": "ci", "access_key_id": akid,
                                "created_at": record.created_at.isoformat(), "revoked": False}
    assert store.secret(akid) == (record, secret)

    with db.session(write=False) as s:  # at rest: nonce (12) + ciphertext (40) + GCM tag (16), never the secret
        blob = bytes(s.scalar(select(AwsKeyRow.secret_encrypted)))
    assert len(blob) == 12 + 40 + 16 and secret.encode() not in blob

    with pytest.raises(KeyExists, match="an AWS key named 'ci' already exists"):
        store.create("ci")
    _, akid2, secret2 = store.create("bot")
    assert akid2 != akid and secret2 != secret
    assert [k.name for k in store.list()] == ["ci", "bot"] and store.count_active() == 2

    revoked = store.revoke("ci")
    assert revoked.revoked and store.secret(akid) is None  # at once through the same store
    assert store.count_active() == 1
    assert store.revoke("ci").revoked  # again: no change
    with pytest.raises(KeyNotFound, match=r"no AWS key named 'cii'\. Did you mean 'ci'"):
        store.revoke("cii")
    record3, akid3, _ = store.create("ci")  # a revoked name is reused
    assert akid3 != akid and not record3.revoked
    assert [(k.name, k.revoked) for k in store.list()] == [("bot", False), ("ci", False)]


def test_unknown_and_malformed_ids_have_no_secret(store):
    store.create("ci")
    for akid in ("VKIAAAAAAAAAAAAAAAAA", "AKIAIOSFODNN7EXAMPLE", "", "VKIA", "vkiaaaaaaaaaaaaaaaaa", None, 3):
        assert store.secret(akid) is None


def test_an_aws_key_cannot_take_an_active_bearer_keys_name(store):
    KeyStore(store.db).create("shared")
    with pytest.raises(KeyExists, match="an API key named 'shared' already exists"):
        store.create("shared")
    KeyStore(store.db).revoke("shared")
    assert store.create("shared")[0].name == "shared"


def test_master_key_file_is_private_and_written_once(store, home):
    path = master_key_path()
    assert path == home / "aws-master.key" and not path.exists()
    assert store.list() == [] and not path.exists()  # only a create makes it
    _, akid, secret = store.create("a")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(home.stat().st_mode) == 0o700
    content = path.read_bytes()
    assert len(base64.urlsafe_b64decode(content.strip())) == 32
    store.create("b")
    assert path.read_bytes() == content  # never rewritten
    fresh = AwsKeyStore(store.db)  # another process: reads the file
    fresh.create("c")
    assert path.read_bytes() == content and fresh.secret(akid)[1] == secret
    assert not list(home.glob(".*.tmp"))


def test_a_missing_master_key_file_is_a_config_error_naming_the_fix(store, home):
    _, akid, _ = store.create("a")
    master_key_path().unlink()
    fresh = AwsKeyStore(store.db)
    with pytest.raises(ConfigError, match=r"master key is missing: restore .*aws-master.key .*VISOR_AWS_MASTER_KEY"):
        fresh.secret(akid)
    with pytest.raises(ConfigError, match="master key is missing"):  # no new master key that orphans the old ones
        fresh.create("b")
    assert not master_key_path().exists()
    fresh.revoke("a")  # with every key revoked, a new master key is made
    _, akid_b, secret_b = fresh.create("b")
    assert master_key_path().exists() and AwsKeyStore(store.db).secret(akid_b)[1] == secret_b


def test_first_creates_at_once_share_one_master_key(db_url, home):
    """Six services creating the first AWS keys at the same moment: one master key file is written, and every
    key's secret decrypts with it (none was encrypted under a master key another creator then replaced)."""
    made = []

    def create_once() -> None:
        with ServiceDB(db_url) as d:
            made.append(AwsKeyStore(d).create(f"k{len(made)}-{os.urandom(4).hex()}")[1:])

    assert run_together(create_once) == []
    assert len(made) == 6
    with ServiceDB(db_url) as d:
        fresh = AwsKeyStore(d)
        assert all(fresh.secret(akid)[1] == secret for akid, secret in made)
    assert not list(home.glob(".*.tmp"))


def test_master_key_from_the_argument_and_the_environment(store, home, monkeypatch):
    key = os.urandom(32)
    by_arg = AwsKeyStore(store.db, master_key=key)
    _, akid, secret = by_arg.create("a")
    assert not master_key_path().exists()  # nothing written: the key came from the caller
    monkeypatch.setenv(MASTER_KEY_ENV, encode_master_key(key).rstrip("="))  # padding optional
    assert AwsKeyStore(store.db).secret(akid)[1] == secret
    assert not master_key_path().exists()

    monkeypatch.setenv(MASTER_KEY_ENV, encode_master_key(os.urandom(32)))  # another key: refused, not garbage
    with pytest.raises(ConfigError, match=f"cannot decrypt the secret of AWS key {akid}: the master key "
                                          f"\\({MASTER_KEY_ENV}\\) is not the one it was created with"):
        AwsKeyStore(store.db).secret(akid)
    with pytest.raises(ConfigError, match="cannot decrypt"):  # nor are keys under two master keys mixed
        AwsKeyStore(store.db).create("b")
    for bad in ("short", "!" * 44, encode_master_key(os.urandom(31))):
        monkeypatch.setenv(MASTER_KEY_ENV, bad)
        with pytest.raises(ConfigError, match=f"{MASTER_KEY_ENV} must be the URL-safe base64 of 32 random bytes"):
            AwsKeyStore(store.db).secret(akid)
    with pytest.raises(ConfigError, match="must be 32 bytes"):
        AwsKeyStore(store.db, master_key=b"x" * 16)


def test_the_access_key_id_is_bound_to_its_ciphertext(store):
    """The id is the AES-GCM associated data: a ciphertext moved onto another key's row does not decrypt."""
    store.create("a")
    _, akid_b, _ = store.create("b")
    with store.db.session() as s:
        blob_a = s.scalar(select(AwsKeyRow.secret_encrypted).where(AwsKeyRow.name == "a"))
        s.execute(update(AwsKeyRow).where(AwsKeyRow.name == "b").values(secret_encrypted=blob_a))
    with pytest.raises(ConfigError, match=f"cannot decrypt the secret of AWS key {akid_b}"):
        AwsKeyStore(store.db).secret(akid_b)


def test_the_database_file_holds_no_secret(store):
    secrets_ = [store.create(f"k{i}")[2] for i in range(5)]
    store.db.close()
    raw = b"".join(p.read_bytes() for p in store.db.path.parent.glob("serve.db*"))
    assert raw and not any(s.encode() in raw for s in secrets_)


def test_a_revocation_elsewhere_takes_effect_within_cache_s(store, monkeypatch):
    _, akid, secret = store.create("a")
    server = AwsKeyStore(store.db, cache_s=30)
    t = [1000.0]
    monkeypatch.setattr(awsauth.time, "monotonic", lambda: t[0])
    assert server.secret(akid)[1] == secret
    AwsKeyStore(store.db).revoke("a")  # `visor keys revoke` in another process
    t[0] += 29
    assert server.secret(akid)[1] == secret  # cached
    t[0] += 2
    assert server.secret(akid) is None


# --------------------------------------------------------------------------- SigV4


def _sign(akid: str, secret: str, *, at: datetime = NOW, region: str = "us-east-1", service: str = "rekognition",
          body: bytes = BODY, url: str = URL, target: str | None = "RekognitionService.DetectLabels",
          extra: dict[str, str] | None = None) -> tuple[dict, bytes]:
    """Headers (with Host, as the server receives them) and body of a request botocore signed at ``at``."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "User-Agent": "Boto3/1.44.18"}
    if target:
        headers["X-Amz-Target"] = target
    headers.update(extra or {})
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.auth, "get_current_datetime", lambda: at.replace(tzinfo=None))
        SigV4Auth(Credentials(akid, secret), service, region).add_auth(request)
    sent = dict(request.headers.items())
    sent["Host"] = urlsplit(url).netloc
    return sent, body


def _verify(store, headers, body=BODY, *, path="/", query="", now=NOW, **kw):
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return verify_sigv4(store, method="POST", path=path, query=query, headers=Headers(raw=raw), body=body,
                        now=now, **kw)


def _refused(store, headers, body=BODY, **kw) -> tuple[str, str, int]:
    with pytest.raises(AwsAuthError) as e:
        _verify(store, headers, body, **kw)
    return e.value.aws_type, str(e.value), e.value.http_status


@pytest.fixture
def key(store):
    record, akid, secret = store.create("client")
    return record, akid, secret


def test_a_request_botocore_signed_is_accepted(store, key):
    record, akid, secret = key
    headers, body = _sign(akid, secret)
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-target" in headers["Authorization"]
    assert _verify(store, headers, body) == record
    plain = {k.lower(): v for k, v in headers.items()}  # any case-insensitive mapping will do
    assert verify_sigv4(store, method="POST", path="/", query="", headers=plain, body=body, now=NOW) == record
    assert verify_sigv4(store, method="post", path="/", query="", headers=plain, body=body, now=NOW) == record
    empty, _ = _sign(akid, secret, body=b"")
    assert _verify(store, empty, b"") == record
    other_region, _ = _sign(akid, secret, region="eu-west-1")
    assert _verify(store, other_region, region="eu-west-1") == record
    query_headers, _ = _sign(akid, secret, url=URL + "?b=2&a=1")
    assert _verify(store, query_headers, query="b=2&a=1") == record


def test_what_a_botocore_client_sends_is_accepted(store, key):
    """The headers and body of a real ``rekognition`` client (what boto3.client builds), captured before sending."""
    record, akid, secret = key

    class Sent(Exception):
        pass

    captured = []

    def capture(request, **_):
        captured.append(request)
        raise Sent

    client = botocore.session.get_session().create_client(
        "rekognition", endpoint_url="http://127.0.0.1:8123", region_name="us-east-1", aws_access_key_id=akid,
        aws_secret_access_key=secret)
    client.meta.events.register("before-send", capture)
    with pytest.raises(Sent):
        client.describe_collection(CollectionId="family")
    request = captured[0]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    headers["Host"] = "127.0.0.1:8123"
    assert headers["X-Amz-Target"] == "RekognitionService.DescribeCollection"
    assert verify_sigv4(store, method=request.method, path="/", query="", body=request.body,
                        headers={k.lower(): v for k, v in headers.items()}) == record
    with pytest.raises(AwsAuthError, match="Signature expired"):  # a replay 6 minutes later
        verify_sigv4(store, method=request.method, path="/", query="", body=request.body,
                     headers={k.lower(): v for k, v in headers.items()},
                     now=datetime.now(UTC) + timedelta(minutes=6))


def test_wrong_secret_and_tampering_are_invalid_signatures(store, key):
    _, akid, secret = key
    headers, body = _sign(akid, secret)
    invalid = ("InvalidSignatureException", MISMATCH, 403)
    assert _refused(store, _sign(akid, secret[:-1] + ("A" if secret[-1] != "A" else "B"))[0]) == invalid
    assert _refused(store, headers, body.replace(b"10", b"11")) == invalid
    assert _refused(store, headers, body + b" ") == invalid
    assert _refused(store, {**headers, "X-Amz-Target": "RekognitionService.DeleteCollection"}) == invalid
    assert _refused(store, {**headers, "Content-Type": "application/json"}) == invalid
    assert _refused(store, {**headers, "Host": "evil.example:8000"}) == invalid
    assert _refused(store, headers, path="/other") == invalid
    assert _refused(store, headers, query="a=1") == invalid
    sig = headers["Authorization"][-64:]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert _refused(store, {**headers, "Authorization": headers["Authorization"][:-64] + flipped}) == invalid
    assert _refused(store, {**headers, "Authorization": headers["Authorization"][:-64] + sig.upper()}) == invalid
    # the date is part of what is signed: moving it (within the window) breaks the signature
    moved = (NOW + timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    assert _refused(store, {**headers, "X-Amz-Date": moved}) == invalid


def test_the_body_is_always_signed(store, key):
    """A client's X-Amz-Content-SHA256 (UNSIGNED-PAYLOAD, or another body's hash) does not replace the body's."""
    _, akid, secret = key
    headers, body = _sign(akid, secret, extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert "x-amz-content-sha256" in headers["Authorization"]
    assert _refused(store, headers, body)[0] == "InvalidSignatureException"


def test_clock_skew_window(store, key):
    record, akid, secret = key
    for minutes in (-4, 4, -5, 5):
        assert _verify(store, _sign(akid, secret, at=NOW + timedelta(minutes=minutes))[0]) == record
    old, _ = _sign(akid, secret, at=NOW - timedelta(minutes=6))
    assert _refused(store, old) == (
        "InvalidSignatureException", "Signature expired: 20261207T120900Z is now earlier than 20261207T121000Z "
        "(20261207T121500Z - 5 min.)", 403)
    ahead, _ = _sign(akid, secret, at=NOW + timedelta(minutes=6))
    assert _refused(store, ahead) == (
        "InvalidSignatureException", "Signature not yet current: 20261207T122100Z is still later than "
        "20261207T122000Z (20261207T121500Z + 5 min.)", 403)
    assert _refused(store, old, max_skew_s=90, now=NOW - timedelta(minutes=4))[1] == (
        "Signature expired: 20261207T120900Z is now earlier than 20261207T120930Z (20261207T121100Z - 90 s.)")


def test_scope_must_be_this_region_service_and_day(store, key):
    _, akid, secret = key
    assert _refused(store, _sign(akid, secret, region="eu-west-1")[0]) == (
        "InvalidSignatureException", "Credential should be scoped to a valid region. ", 403)
    assert _refused(store, _sign(akid, secret, service="s3")[0]) == (
        "InvalidSignatureException", "Credential should be scoped to correct service: 'rekognition'. ", 403)
    headers, _ = _sign(akid, secret)
    day = headers["Authorization"].replace("/20261207/", "/20261206/")
    assert _refused(store, {**headers, "Authorization": day}) == (
        "InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
        "from HTTP: '20261206' != '20261207', from '20261207T121500Z'.", 403)
    term = headers["Authorization"].replace("/aws4_request", "/aws5_request")
    assert _refused(store, {**headers, "Authorization": term})[:2] == (
        "InvalidSignatureException", "Credential should be scoped with a valid terminator: 'aws4_request', "
        "not 'aws5_request'. ")


def test_unknown_and_revoked_keys_are_unrecognized(store, key):
    _, akid, secret = key
    unrecognized = ("UnrecognizedClientException", "The security token included in the request is invalid.", 403)
    assert _refused(store, _sign("VKIAAAAAAAAAAAAAAAAA", secret)[0]) == unrecognized
    assert _refused(store, _sign("AKIAIOSFODNN7EXAMPLE", secret)[0]) == unrecognized
    headers, _ = _sign(akid, secret)
    store.revoke("client")
    assert _refused(store, headers) == unrecognized


def test_missing_and_incomplete_authorization(store, key):
    _, akid, secret = key
    headers, _ = _sign(akid, secret)
    missing = ("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    no_auth = {k: v for k, v in headers.items() if k != "Authorization"}
    assert _refused(store, no_auth) == missing
    assert _refused(store, {**headers, "Authorization": "Bearer visor_abc"}) == missing
    assert _refused(store, {**headers, "Authorization": "AWS4-HMAC-SHA1 Credential=x"}) == missing
    assert _refused(store, {**headers, "Authorization": "AWS4-HMAC-SHA256 garbage"}) == (
        "IncompleteSignatureException", "Authorization header requires 'Credential' parameter. Authorization header "
        "requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.", 400)
    no_date = {k: v for k, v in headers.items() if k != "X-Amz-Date"}
    assert _refused(store, no_date) == (
        "IncompleteSignatureException", "Authorization header requires existence of a 'X-Amz-Date' header.", 400)
    assert _refused(store, {**headers, "X-Amz-Date": "2026-12-07T12:15:00Z"})[0] == "IncompleteSignatureException"
    assert _refused(store, {**headers, "X-Amz-Date": "20261307T121500Z"})[0] == "IncompleteSignatureException"
    short = headers["Authorization"].replace("/us-east-1/", "/")
    assert _refused(store, {**headers, "Authorization": short})[:2] == (
        "IncompleteSignatureException", "Credential must have exactly 5 slash-delimited elements, e.g. "
        f"keyid/date/region/service/term, got '{akid}/20261207/rekognition/aws4_request'")
    no_host = headers["Authorization"].replace("content-type;host;", "content-type;")
    assert _refused(store, {**headers, "Authorization": no_host})[:2] == (
        "IncompleteSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")


def test_every_x_amz_header_must_be_signed(store, key):
    """X-Amz-Target names the operation: an unsigned one could turn a captured DescribeCollection into a delete."""
    _, akid, secret = key
    headers, _ = _sign(akid, secret, target=None, extra={"Content-Type": "application/x-amz-json-1.1"})
    assert _refused(store, {**headers, "X-Amz-Target": "RekognitionService.DeleteCollection"})[:2] == (
        "IncompleteSignatureException", "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization.")


def test_malformed_requests_raise_only_aws_auth_errors(store, key):
    """Truncated, mutated and odd headers and paths: always AwsAuthError, never another exception."""
    _, akid, secret = key
    headers, body = _sign(akid, secret)
    auth, date = headers["Authorization"], headers["X-Amz-Date"]
    rng = random.Random(19)
    odd = ["", " ", ",", "=", "/", ";", "\t", "é", "ÿ", "\x00", "%", "AWS4-HMAC-SHA256", "Credential=", "Signature=",
           "SignedHeaders=", "SignedHeaders=;", "Credential=////", "Credential=/a/b/c/d/e/f"]
    cases = [auth[:i] for i in range(len(auth))]
    for _ in range(400):
        chars = list(auth)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[pos] = rng.choice(odd) or chars[pos]
            elif op < 0.7:
                del chars[pos]
            else:
                chars.insert(pos, rng.choice(odd))
        cases.append("".join(chars))
    cases += ["AWS4-HMAC-SHA256 " + s for s in odd]
    cases += [auth.replace("SignedHeaders=content-type;host;x-amz-date;x-amz-target", f"SignedHeaders={s}")
              for s in ("host", "host;", ";host", "HOST", "host;host", "host;nope", "host;x-amz-date;x-amz-target",
                        "content-type;host;x-amz-date;x-amz-target;zzz")]
    paths = ["/", "", "*", "//", "//[", "/%zz", "/a b", "/é", "/?x", "/#f", "/../..", "http://x/"]
    outcomes = set()
    for i, value in enumerate(cases):
        h = {**headers, "Authorization": value}
        if i % 7 == 0:
            h["X-Amz-Date"] = rng.choice([date[:i % 16], date + "x", "é" * 16, "99999999T999999Z", ""])
        try:
            _verify(store, h, body, path=paths[i % len(paths)], query=rng.choice(["", "a", "=&=", "%", "a=1&a=0"]))
            outcomes.add("accepted")
        except AwsAuthError as e:
            outcomes.add(e.aws_type)
    assert outcomes <= {"accepted", "MissingAuthenticationTokenException", "IncompleteSignatureException",
                        "InvalidSignatureException", "UnrecognizedClientException"}
    assert {"MissingAuthenticationTokenException", "IncompleteSignatureException",
            "InvalidSignatureException"} <= outcomes
    # a well-formed signature over odd paths, queries and header values: botocore rebuilds them or it is a mismatch
    # not "/", "" (no path) nor "/../.." (dot segments removed): the root, for botocore as for AWS
    for i, path in enumerate(p for p in paths if p not in ("/", "", "/../..")):
        for query in ("", "a", "=&=", "%", "a=1&a=0", "é=\x00"):
            odd_headers = {**headers, "Content-Type": rng.choice(["", " ", "é\x00", "a\tb", ";,="])}
            assert _refused(store, odd_headers if i % 2 else headers, body, path=path, query=query)[:2] == (
                "InvalidSignatureException", MISMATCH)
    # repeated Authorization or X-Amz-Date headers are refused too
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    for name in (b"authorization", b"x-amz-date"):
        extra = next(v for k, v in raw if k == name)
        with pytest.raises(AwsAuthError):
            verify_sigv4(store, method="POST", path="/", query="", headers=Headers(raw=[*raw, (name, extra)]),
                         body=body, now=NOW)


def test_an_older_database_gains_the_aws_keys_table(db, home):
    """Opening a database made before AWS keys existed creates their table (and nothing else changes)."""
    with db.engine.begin() as c:
        c.execute(text("DROP TABLE aws_keys"))
    KeyStore(db).create("bearer")
    db.close()
    with ServiceDB(db.url if db.path is None else str(db.path)) as again:
        store = AwsKeyStore(again)
        _, akid, secret = store.create("aws")
        assert store.secret(akid)[1] == secret and [k.name for k in KeyStore(again).list()] == ["bearer"]
