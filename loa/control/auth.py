"""Credentials: the admin token (stored only as a hash) and the source password.

On first start ``loa serve`` makes an admin token, prints it once and keeps only its SHA-256;
``LOA_ADMIN_TOKEN`` sets the token explicitly instead. Tokens carry rights; later issues add
narrower ones (``alert`` for emergency alerts, commune operators limited to their zones).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_FILE = "tokens.json"
SOURCE_PASSWORD_FILE = "source_password"


class Right(enum.Enum):
    """What a token may do; ADMIN implies every other right."""

    ADMIN = "admin"  # everything
    OPERATE = "operate"  # zones, live, programmes
    ALERT = "alert"  # emergency alerts (separate from ordinary operation)


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and configured."""
    return _hash(token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for (its name goes in the audit log) and its rights."""

    name: str
    rights: frozenset[Right]

    def may(self, right: Right) -> bool:
        """Whether it holds ``right`` (or ADMIN)."""
        return Right.ADMIN in self.rights or right in self.rights


class TokenStore:
    """Tokens known only by their SHA-256 hex digest, each mapped to its Principal."""

    def __init__(self, entries: dict[str, Principal]) -> None:
        self._by_hash = entries

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a bearer token, or None (for an empty token too). Compares digests
        in constant time."""
        if not token:
            return None
        digest = _hash(token)
        for stored, principal in self._by_hash.items():
            if hmac.compare_digest(stored, digest):
                return principal
        return None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load_tokens(data_dir: Path, explicit_admin: str | None,
                extra: dict[str, Principal] | None = None) -> tuple[TokenStore, str | None]:
    """The token store, and a newly generated admin token to print once (else None).
    ``extra`` maps more tokens' SHA-256 to their principals (from the config)."""
    admin = Principal("admin", frozenset({Right.ADMIN}))
    if explicit_admin:
        return TokenStore({_hash(explicit_admin): admin, **(extra or {})}), None
    path = data_dir / TOKEN_FILE
    if path.exists():
        raw = json.loads(path.read_text())
        entries = {
            e["sha256"]: Principal(e["name"], frozenset(Right(r) for r in e["rights"]))
            for e in raw["tokens"]
        }
        return TokenStore({**entries, **(extra or {})}), None
    token = secrets.token_urlsafe(32)
    record = {"tokens": [{"name": "admin", "sha256": _hash(token), "rights": ["admin"]}]}
    _write_private(path, json.dumps(record, indent=2))
    return TokenStore({_hash(token): admin, **(extra or {})}), token


def load_source_password(data_dir: Path, configured: str | None) -> tuple[str, bool]:
    """The global source password, and whether it was generated just now (print it once)."""
    if configured:
        return configured, False
    path = data_dir / SOURCE_PASSWORD_FILE
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(12)
    _write_private(path, password + "\n")
    return password, True
