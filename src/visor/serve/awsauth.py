"""AWS-style access keys and Signature Version 4 verification, for the Rekognition-compatible API.

An AWS key is an access key id (``VKIA`` and 16 characters of ``[A-Z2-7]``: 20 characters, AWS's length) and a
40-character secret, created by ``visor keys create --name NAME --aws`` and shown once. Clients sign each request
with it exactly as they sign requests to AWS (boto3 and every AWS SDK do it unchanged); :func:`verify_sigv4` checks
the signature, the request's date (:data:`MAX_SKEW_S`, AWS's five minutes, either way: an old request replayed later
is refused) and the credential's scope (region, service, day).

Why the secret is stored encrypted, not hashed
----------------------------------------------
A bearer key (:mod:`visor.serve.keys`) is stored as a SHA-256 hash, since checking it only needs to recompute the
hash. SigV4 works differently: the client never sends its secret, it sends an HMAC of the request keyed by a key
derived from the secret (``HMAC("AWS4" + secret, date)``, then region, service, ``aws4_request``). To check that HMAC
the server must compute the same one, so it needs the secret itself (or a key derived from it that changes every
day, which is no better kept): a one-way hash cannot verify a signature. So the secret is kept encrypted at rest,
with AES-256-GCM under a *master key* kept outside the database, the way AWS keeps its secrets under its own KMS:
a leaked database or backup reveals no secret without the master key. Each row stores a fresh 12-byte nonce followed
by the ciphertext and tag, with the access key id as associated data, so a ciphertext copied onto another key's row
does not decrypt.

Where the master key lives (first found wins):

1. the ``master_key`` argument of :class:`AwsKeyStore` (32 bytes);
2. the environment variable ``VISOR_AWS_MASTER_KEY``: the URL-safe base64 of 32 bytes, for replicas that share a
   PostgreSQL database (give each the same value; ``cat $VISOR_HOME/aws-master.key`` prints one);
3. the file ``$VISOR_HOME/aws-master.key`` (:func:`master_key_path`), in the same text form, created ``0o600``
   (atomically, through :mod:`visor.io.files`) by the first ``create`` and never overwritten.

Back the master key up apart from the database: without it the AWS keys' secrets cannot be decrypted, and the keys
must be revoked and created again. A store whose master key is missing while active AWS keys exist refuses to work
(:class:`~visor.errors.ConfigError` naming the fix) rather than make a new master key that would orphan them.

Decrypted secrets are cached in memory for ``cache_s`` seconds (30 by default), so a revocation made by another
process (``visor keys revoke``) takes effect within that time; a revocation through the same store at once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from visor.config import suggest
from visor.errors import ConfigError, VisorError
from visor.io.files import PRIVATE, atomic_write, data_home, private_dir
from visor.serve.db import ApiKeyRow, AwsKeyRow, ServiceDB, utcnow
from visor.serve.keys import KeyExists, KeyNotFound, _check_name

__all__ = [
    "ACCESS_KEY_PREFIX", "DEFAULT_REGION", "MASTER_KEY_ENV", "MASTER_KEY_FILE", "MAX_SKEW_S", "SERVICE", "AwsAuthError",
    "AwsKey", "AwsKeyStore", "master_key_path", "verify_sigv4",
]

ACCESS_KEY_PREFIX = "VKIA"
DEFAULT_REGION = "us-east-1"
SERVICE = "rekognition"
#: How far a request's X-Amz-Date may be from the server's clock, either way (AWS's 5 minutes).
MAX_SKEW_S = 300
MASTER_KEY_ENV = "VISOR_AWS_MASTER_KEY"
MASTER_KEY_FILE = "aws-master.key"
ALGORITHM = "AWS4-HMAC-SHA256"
#: Length of a secret access key (AWS's).
SECRET_CHARS = 40
MASTER_KEY_BYTES = 32
NONCE_BYTES = 12
#: Decrypted secrets held in memory at most (the cache is emptied when full).
MAX_CACHED = 4096

_ACCESS_KEY_RE = re.compile(ACCESS_KEY_PREFIX + r"[A-Z2-7]{16}")
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
#: pg_advisory_xact_lock key under which AWS keys are created (any fixed 64-bit number): creators take turns, so
#: the first one alone writes the master key file.
_CREATE_LOCK = 0x76697330_61777331

_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS Secret "
             "Access Key and signing method. Consult the service documentation for details.")


# --------------------------------------------------------------------------- records and errors


@dataclass(frozen=True)
class AwsKey:
    """An AWS key's public record (never the secret). The access key id is an identifier, not a secret."""

    id: int
    name: str
    access_key_id: str
    created_at: datetime
    revoked: bool

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "access_key_id": self.access_key_id,
                "created_at": self.created_at.isoformat(), "revoked": self.revoked}


class AwsAuthError(VisorError):
    """A request AWS would refuse before running it. ``aws_type`` is AWS's error code (the response's __type):
    MissingAuthenticationTokenException, IncompleteSignatureException, UnrecognizedClientException or
    InvalidSignatureException; ``http_status`` is the status AWS answers it with."""

    http_status = 403
    code = "aws_auth"

    def __init__(self, aws_type: str, message: str, http_status: int = 403) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.http_status = http_status

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "aws_type": self.aws_type}


def _record(row: AwsKeyRow) -> AwsKey:
    return AwsKey(row.id, row.name, row.access_key_id, row.created_at, row.revoked_at is not None)


# --------------------------------------------------------------------------- master key


def master_key_path() -> Path:
    """``$VISOR_HOME/aws-master.key`` (``~/.local/share/visor/aws-master.key`` when VISOR_HOME is unset)."""
    return data_home() / MASTER_KEY_FILE


def encode_master_key(key: bytes) -> str:
    """The text form of a master key (file and environment variable): URL-safe base64 of its 32 bytes."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def _decode_master_key(value: str, source: str) -> bytes:
    value = value.strip()
    try:
        key = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"{source} must be the URL-safe base64 of {MASTER_KEY_BYTES} random bytes (44 characters, "
                          "as `python -c \"import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())\""
                          "` prints)")
    return key


def _check_master_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"the AWS keys' master key must be {MASTER_KEY_BYTES} bytes")
    return bytes(key)


def _encrypt(master: bytes, access_key_id: str, secret: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(master).encrypt(nonce, secret.encode("ascii"), access_key_id.encode("ascii"))


def _decrypt(master: bytes, access_key_id: str, blob: bytes, source: str) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        plain = AESGCM(master).decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]),
                                       access_key_id.encode("ascii"))
    except (InvalidTag, ValueError):
        raise ConfigError(f"cannot decrypt the secret of AWS key {access_key_id}: the master key ({source}) is not "
                          "the one it was created with. Restore that master key, or revoke the AWS keys "
                          "('visor keys revoke NAME') and create new ones") from None
    return plain.decode("ascii")


# --------------------------------------------------------------------------- the store


class AwsKeyStore:
    """Create, list, revoke and look up the AWS keys of a :class:`ServiceDB` (see the module's notes on the
    master key). Thread-safe; one store per service."""

    def __init__(self, db: ServiceDB, *, master_key: bytes | None = None, cache_s: float = 30.0) -> None:
        self.db = db
        self.cache_s = float(cache_s)
        self._master: bytes | None = None if master_key is None else _check_master_key(master_key)
        self._master_source = "the master_key argument" if master_key is not None else ""
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, AwsKey, str]] = {}

    # ------------------------------------------------------------ master key

    def _load_master(self) -> bytes | None:
        """The master key from the argument, the environment or the file; None when none exists yet."""
        if self._master is not None:
            return self._master
        env = os.environ.get(MASTER_KEY_ENV)
        if env:
            self._master, self._master_source = _decode_master_key(env, MASTER_KEY_ENV), MASTER_KEY_ENV
            return self._master
        path = master_key_path()
        try:
            content = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the AWS keys' master key {path}: {getattr(e, 'strerror', None) or e}") \
                from None
        self._master, self._master_source = _decode_master_key(content, str(path)), str(path)
        return self._master

    def _missing_master(self) -> ConfigError:
        path = master_key_path()
        return ConfigError(f"AWS keys exist but their master key is missing: restore {path} (or set {MASTER_KEY_ENV}) "
                           "from where it was backed up; if it is lost, revoke the AWS keys ('visor keys revoke NAME') "
                           "and create new ones")

    def _master_for_create(self, active: list[AwsKeyRow]) -> bytes:
        """The master key, made (and written to the file) when there is none and no active key needs one. Called
        inside create's transaction, so creators take turns and the file is written once."""
        master = self._load_master()
        if master is None:
            if active:
                raise self._missing_master()
            path = master_key_path()
            master = secrets.token_bytes(MASTER_KEY_BYTES)
            try:
                if not path.parent.exists() or path.parent.absolute() == data_home().absolute():
                    private_dir(path.parent)
                atomic_write(path, encode_master_key(master) + "\n", permissions=PRIVATE)
            except OSError as e:
                raise ConfigError(f"cannot write the AWS keys' master key {path}: {e.strerror or e}") from None
            self._master, self._master_source = master, str(path)
        elif active:  # a different master key than the existing keys': refuse to mix them
            _decrypt(master, active[0].access_key_id, active[0].secret_encrypted, self._master_source)
        return master

    # ------------------------------------------------------------ keys

    def create(self, name: str) -> tuple[AwsKey, str, str]:
        """A new AWS key called ``name``: its record, access key id and secret (stored only encrypted).

        Raises KeyExists if an active AWS key or bearer API key has that name (a revoked AWS key is replaced).
        """
        name = _check_name(name)
        access_key_id = ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode("ascii")
        secret = secrets.token_urlsafe(30)
        try:
            with self.db.session() as s:
                if s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
                # FOR UPDATE (PostgreSQL) / BEGIN IMMEDIATE (SQLite): the first statement takes the write lock
                old = s.scalar(select(AwsKeyRow).where(AwsKeyRow.name == name).with_for_update())
                if old is not None:
                    if old.revoked_at is None:
                        raise KeyExists(f"an AWS key named {name!r} already exists; revoke it first or pick another "
                                        "name")
                    s.delete(old)
                    s.flush()
                if s.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))):
                    raise KeyExists(f"an API key named {name!r} already exists; pick another name for the AWS key")
                active = list(s.scalars(select(AwsKeyRow).where(AwsKeyRow.revoked_at.is_(None)).limit(1)))
                master = self._master_for_create(active)
                row = AwsKeyRow(name=name, access_key_id=access_key_id, created_at=utcnow(),
                                secret_encrypted=_encrypt(master, access_key_id, secret))
                s.add(row)
                s.flush()
                record = _record(row)
        except IntegrityError:  # created concurrently under the same name
            raise KeyExists(f"an AWS key named {name!r} already exists") from None
        return record, access_key_id, secret

    def list(self) -> list[AwsKey]:
        """Every AWS key, revoked ones included, oldest first."""
        with self.db.session(write=False) as s:
            return [_record(r) for r in s.scalars(select(AwsKeyRow).order_by(AwsKeyRow.id))]

    def revoke(self, name: str) -> AwsKey:
        """Revoke the AWS key called ``name`` (again: no change); this store forgets its secret at once, other
        processes within their ``cache_s``. Raises KeyNotFound."""
        with self.db.session() as s:
            row = s.scalar(select(AwsKeyRow).where(AwsKeyRow.name == name))
            if row is None:
                names = s.scalars(select(AwsKeyRow.name)).all()
                raise KeyNotFound(f"no AWS key named {name!r}.{suggest(name, names)}".rstrip("."))
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            s.flush()
            record = _record(row)
        with self._lock:
            self._cache.pop(record.access_key_id, None)
        return record

    def secret(self, access_key_id: str) -> tuple[AwsKey, str] | None:
        """The active key's record and decrypted secret; None when ``access_key_id`` is unknown or revoked.

        Cached for ``cache_s`` seconds. Raises ConfigError when the master key is missing or not the key's."""
        if not isinstance(access_key_id, str) or not _ACCESS_KEY_RE.fullmatch(access_key_id):
            return None  # not an id visor issues: no database query
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(access_key_id)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        with self.db.session(write=False) as s:
            row = s.scalar(select(AwsKeyRow).where(AwsKeyRow.access_key_id == access_key_id))
            if row is None or row.revoked_at is not None:
                with self._lock:
                    self._cache.pop(access_key_id, None)
                return None
            record, blob = _record(row), bytes(row.secret_encrypted)
        master = self._load_master()
        if master is None:
            raise self._missing_master()
        secret = _decrypt(master, access_key_id, blob, self._master_source)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[access_key_id] = (now + self.cache_s, record, secret)
        return record, secret

    def count_active(self) -> int:
        with self.db.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(AwsKeyRow).where(AwsKeyRow.revoked_at.is_(None))) or 0


# --------------------------------------------------------------------------- SigV4


def _incomplete(message: str) -> AwsAuthError:
    return AwsAuthError("IncompleteSignatureException", message, 400)


def _invalid(message: str) -> AwsAuthError:
    return AwsAuthError("InvalidSignatureException", message, 403)


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` (lower case) in order: starlette's Headers.getlist, or a plain mapping
    searched without regard to case."""
    getlist = getattr(headers, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(name)]
    return [str(v) for k, v in headers.items() if str(k).lower() == name]


def _header_names(headers: Mapping[str, str]) -> set[str]:
    return {str(k).lower() for k in headers}


def _parse_authorization(value: str) -> dict[str, str]:
    """Credential, SignedHeaders and Signature of ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
    Signature=...``; IncompleteSignatureException when one is missing."""
    params: dict[str, str] = {}
    for part in value[len(ALGORITHM):].split(","):
        key, sep, val = part.strip().partition("=")
        if sep and key in ("Credential", "SignedHeaders", "Signature") and key not in params:
            params[key] = val.strip()
    missing = [k for k in ("Credential", "Signature", "SignedHeaders") if not params.get(k)]
    if missing:
        raise _incomplete(" ".join(f"Authorization header requires '{k}' parameter." for k in missing))
    return params


def _skew_text(max_skew_s: int) -> str:
    return f"{max_skew_s // 60} min." if max_skew_s % 60 == 0 else f"{max_skew_s} s."


def _expected_signature(secret: str, *, access_key_id: str, service: str, region: str, amz_date: str, method: str,
                        path: str, query: str, signed: list[tuple[str, list[str]]], body: bytes) -> str:
    """The SigV4 signature of the request as rebuilt here, computed by botocore's own signer."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials

    headers_to_sign = HTTPHeaders()
    for name, values in signed:
        for v in values or [""]:
            headers_to_sign[name] = v

    class _Signer(SigV4Auth):
        def headers_to_sign(self, request: Any) -> HTTPHeaders:
            # exactly the headers the client listed (botocore would drop some, e.g. user-agent, and add host)
            return headers_to_sign

    if not path.startswith("/"):
        path = "/" + path
    # No header on the request itself: the payload hash is always the body's own (a client's
    # X-Amz-Content-SHA256 header, when signed, is in headers_to_sign and must then equal it).
    request = AWSRequest(method=method.upper(), url="http://localhost" + path + (f"?{query}" if query else ""),
                         data=bytes(body))
    request.context["timestamp"] = amz_date
    signer = _Signer(Credentials(access_key_id, secret), service, region)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def verify_sigv4(store: AwsKeyStore, *, method: str, path: str, query: str, headers: Mapping[str, str],
                 body: bytes, service: str = SERVICE, region: str = DEFAULT_REGION,
                 now: datetime | None = None, max_skew_s: int = MAX_SKEW_S) -> AwsKey:
    """The AWS key that signed this request (AWS Signature Version 4, ``Authorization`` header), or AwsAuthError.

    ``path`` is the request's path as sent, still percent-encoded (starlette's ``scope["raw_path"]``; "/" for the
    Rekognition API), ``query`` the raw query string ("" usually), ``headers`` a case-insensitive mapping
    (starlette's Headers) and ``body`` the raw body. The ``Host`` header must be signed and reach the server
    unchanged (a reverse proxy must pass it through), and so must every ``X-Amz-*`` header the request carries
    (X-Amz-Target names the operation: an unsigned one could be swapped).

    Checks, in order, each raising AwsAuthError with AWS's code and message: the header is there
    (MissingAuthenticationTokenException) and complete, with an X-Amz-Date (IncompleteSignatureException); the
    credential's scope: its day is X-Amz-Date's, its region ``region``, its service ``service``
    (InvalidSignatureException); X-Amz-Date within ``max_skew_s`` of ``now`` (InvalidSignatureException:
    "Signature expired" / "Signature not yet current"); the access key id is an active key
    (UnrecognizedClientException); the signature, recomputed with botocore's SigV4 signer over the headers the
    client listed in SignedHeaders, the path, query and body, matches in constant time (InvalidSignatureException).
    """
    values = _header_values(headers, "authorization")
    authorization = values[0].strip() if len(values) == 1 else ""
    if not authorization.startswith(ALGORITHM + " "):
        raise AwsAuthError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    params = _parse_authorization(authorization)

    scope = params["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise _incomplete("Credential must have exactly 5 slash-delimited elements, e.g. "
                          f"keyid/date/region/service/term, got '{params['Credential'][:200]}'")
    access_key_id, scope_day, scope_region, scope_service, terminator = scope

    dates = _header_values(headers, "x-amz-date")
    amz_date = dates[0].strip() if len(dates) == 1 else ""
    if not amz_date:
        raise _incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
    try:
        if not _AMZ_DATE_RE.fullmatch(amz_date):
            raise ValueError(amz_date)
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{amz_date[:40]}'. See "
                          "http://en.wikipedia.org/wiki/ISO_8601") from None

    signed_names = params["SignedHeaders"].split(";")
    if not all(_HEADER_NAME_RE.fullmatch(n) for n in signed_names):
        raise _incomplete(f"Invalid SignedHeaders: '{params['SignedHeaders'][:200]}'; header names are lower case, "
                          "separated by ';'.")
    if "host" not in signed_names:
        raise _incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    unsigned = sorted(n for n in _header_names(headers) if n.startswith("x-amz-") and n not in signed_names)
    if unsigned:
        raise _incomplete(f"'{unsigned[0]}' must be a 'SignedHeader' in the AWS Authorization.")

    if scope_day != amz_date[:8]:
        raise _invalid("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                       f"'{scope_day[:40]}' != '{amz_date[:8]}', from '{amz_date}'.")
    if scope_region != region:
        raise _invalid("Credential should be scoped to a valid region. ")
    if scope_service != service:
        raise _invalid(f"Credential should be scoped to correct service: '{service}'. ")
    if terminator != "aws4_request":
        raise _invalid("Credential should be scoped with a valid terminator: 'aws4_request', "
                       f"not '{terminator[:40]}'. ")

    now = (now or datetime.now(UTC)).astimezone(UTC)
    skew = timedelta(seconds=max_skew_s)
    if signed_at < now - skew:
        raise _invalid(f"Signature expired: {amz_date} is now earlier than {(now - skew).strftime(_AMZ_DATE_FORMAT)} "
                       f"({now.strftime(_AMZ_DATE_FORMAT)} - {_skew_text(max_skew_s)})")
    if signed_at > now + skew:
        raise _invalid(f"Signature not yet current: {amz_date} is still later than "
                       f"{(now + skew).strftime(_AMZ_DATE_FORMAT)} ({now.strftime(_AMZ_DATE_FORMAT)} + "
                       f"{_skew_text(max_skew_s)})")

    found = store.secret(access_key_id)
    if found is None:
        raise AwsAuthError("UnrecognizedClientException", "The security token included in the request is invalid.",
                           403)
    record, secret = found

    provided = params["Signature"]
    if not _SIGNATURE_RE.fullmatch(provided):
        raise _invalid(_MISMATCH)
    try:
        expected = _expected_signature(
            secret, access_key_id=access_key_id, service=service, region=region, amz_date=amz_date, method=method,
            path=path, query=query, body=body,
            signed=[(n, _header_values(headers, n)) for n in dict.fromkeys(signed_names)])
    except (ValueError, TypeError, UnicodeError, LookupError):  # a path or header botocore cannot rebuild
        raise _invalid(_MISMATCH) from None
    if not hmac.compare_digest(expected, provided):
        raise _invalid(_MISMATCH)
    return record
