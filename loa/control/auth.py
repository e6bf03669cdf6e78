"""Credentials and what they allow: the admin token (stored only as a hash), the source
password, rights, roles, and the scope a caller acts in.

On first start ``loa serve`` makes an admin token, prints it once and keeps only its SHA-256;
``LOA_ADMIN_TOKEN`` sets the token explicitly instead. The config's ``[[tokens]]`` add more,
each with its rights. People have accounts (``loa.control.accounts``): a role
(``Role``: admin, operator, alert, viewer; alert may go with operator), which gives rights,
and a scope.

The scope is the zone subtree a caller acts on (Circular 39: the district runs the station,
each commune its own loudspeakers): a zone id, whose zone and every zone below it are the
caller's. Tokens of the environment and the config have no scope (every zone). ``Scope`` is
the one check every API surface asks: ``contains`` (the zone lies in the subtree: the caller
may act on it and read it), ``overlaps`` (it lies in the subtree or above it, so what plays
there reaches into it: the caller may see it), ``covers_all`` (the scope is the whole tree:
what belongs to no zone). ``check`` raises ``ScopeError`` (403) naming the zone and the scope.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loa.core.i18n import N_, Explained, Message
from loa.core.zones import ZoneTree, home_zone_id

TOKEN_FILE = "tokens.json"
SOURCE_PASSWORD_FILE = "source_password"
ALL_ZONES = "*"  # an account's scope that is every zone (a tree with several roots)


class Right(enum.Enum):
    """What a token may do; ADMIN implies every other right."""

    ADMIN = "admin"  # everything
    OPERATE = "operate"  # zones, live, programmes
    ALERT = "alert"  # emergency alerts (separate from ordinary operation)


class Role(enum.Enum):
    """An account's role (issue 14): what its holder does, as rights (``ROLE_RIGHTS``)."""

    ADMIN = "admin"  # everything in scope, users included
    OPERATOR = "operator"  # live, requests, schedule, media, volume, power, commands, reports
    ALERT = "alert"  # emergency alerts and CAP; may go with operator
    VIEWER = "viewer"  # read only


ROLE_RIGHTS: dict[Role, frozenset[Right]] = {
    Role.ADMIN: frozenset({Right.ADMIN}),
    Role.OPERATOR: frozenset({Right.OPERATE}),
    Role.ALERT: frozenset({Right.ALERT}),
    Role.VIEWER: frozenset(),
}
# the roles an account may hold together; any one role alone is allowed too
ROLE_PAIRS = (frozenset({Role.OPERATOR, Role.ALERT}),)


class RoleError(Explained, ValueError):
    """A role that does not exist, or roles that do not go together; the message says which
    roles exist and which go together."""


def parse_roles(value: object) -> frozenset[Role]:
    """The roles of ``value``: a role name, names separated by commas, or a list of names.
    Raises RoleError (a ValueError) saying which roles exist and which go together."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise RoleError(N_("role must be a role name or a list of them"))
    known = ", ".join(r.value for r in Role)
    roles = set()
    for name in names:
        try:
            roles.add(Role(name.strip().lower()))
        except ValueError:
            raise RoleError(N_("unknown role {role!r}: the roles are {roles}"),
                            role=name.strip(), roles=known) from None
    found = frozenset(roles)
    if not found:
        raise RoleError(N_("give a role: {roles}"), roles=known)
    if len(found) > 1 and found not in ROLE_PAIRS:
        raise RoleError(N_("only alert and operator go together; any other role stands alone"))
    return found


def rights_of(roles: Iterable[Role]) -> frozenset[Right]:
    """The rights the roles give together."""
    return frozenset(right for role in roles for right in ROLE_RIGHTS[role])


def role_names(roles: Iterable[Role]) -> list[str]:
    """The roles' names, in ``Role``'s order (for JSON and tables)."""
    held = set(roles)
    return [r.value for r in Role if r in held]


class ScopeError(Explained):
    """A caller acting or reading outside their scope (answered 403); the message names the
    zone (or what lies in none) and the scope, ``scope`` the scope's zone id."""

    def __init__(self, message: str | Message, /, *, scope: str = "", **fields: Any) -> None:
        super().__init__(message, scope=scope, **fields)
        self.scope = scope


# each right as messages name it, in the reader's language ("cần quyền vận hành")
RIGHT_NAMES = {Right.ADMIN: N_("admin"), Right.OPERATE: N_("operate"), Right.ALERT: N_("alert")}


def right_name(right: str) -> str | Message:
    """The right (its value, ``"operate"``) as a message names it: a phrase of the catalogue
    (the value itself for one ``Right`` does not know)."""
    try:
        return Message(RIGHT_NAMES[Right(right)])
    except ValueError:
        return right


class RightError(Explained):
    """A caller whose role lacks the right for what they asked (answered 403); ``right`` the
    right's name (its value, as the API's ``"right"`` gives it; the message names it in the
    reader's language)."""

    def __init__(self, right: str) -> None:
        super().__init__(N_("needs the {right} right"), right=right_name(right))
        self.right = right


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and configured."""
    return _hash(token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request speaks for: its ``name`` (a configured token's, or the account's
    username: the audit log's "who"), its rights, its ``scope`` (the zone id whose subtree it
    acts on; None: every zone), its account's roles and username (``user``; None for a
    configured token)."""

    name: str
    rights: frozenset[Right]
    scope: str | None = None
    roles: frozenset[Role] = frozenset()
    user: str | None = None

    def may(self, right: Right) -> bool:
        """Whether it holds ``right`` (or ADMIN)."""
        return Right.ADMIN in self.rights or right in self.rights


@dataclass(frozen=True, slots=True)
class Scope:
    """A caller's reach over the zone tree: the subtree of ``root`` (None: every zone). Zone
    ids may be an alert's run-time group (``home~alert``): it counts as its home zone. Reads
    the tree as it is now (it changes while alerts run)."""

    zones: ZoneTree
    root: str | None

    def _ancestry(self, zone_id: str) -> list[str]:
        """The zone and its ancestors up to its root; [] for an unknown zone."""
        out: list[str] = []
        zid: str | None = home_zone_id(zone_id)
        while zid is not None and zid in self.zones and zid not in out:
            out.append(zid)
            zid = self.zones.get(zid).parent_id
        return out

    @property
    def label(self) -> str:
        """The scope as the messages name it: its zone id, or ``*`` for every zone."""
        return self.root if self.root is not None else ALL_ZONES

    def covers_all(self) -> bool:
        """Whether the scope is the whole tree: no root, or the tree's only root."""
        if self.root is None:
            return True
        roots = self.zones.roots()
        return len(roots) == 1 and roots[0].id == self.root

    def contains(self, zone_id: str) -> bool:
        """The zone lies in the subtree (the caller may act on it and read it). An unknown
        zone lies in none but the whole tree's."""
        return self.root is None or self.root in self._ancestry(zone_id)

    def overlaps(self, zone_id: str) -> bool:
        """The zone lies in the subtree or above it: what plays there reaches the caller's
        zones (they may see it, not change it)."""
        if self.contains(zone_id):
            return True
        return zone_id in self._ancestry(self.root) if self.root is not None else False

    def check(self, zone_id: str) -> None:
        """Raise ScopeError unless the zone lies in the subtree."""
        if not self.contains(zone_id):
            raise ScopeError(N_("zone {zone!r} is outside your scope ({scope})"), zone=zone_id,
                             scope=self.label)

    def check_all(self, what: str | Message) -> None:
        """Raise ScopeError unless the scope is the whole tree; ``what`` names what belongs to
        no one zone (``Message(N_("every zone"))``, ``"the station's media"``)."""
        if not self.covers_all():
            raise ScopeError(N_("{what} is outside your scope ({scope})"), what=what,
                             scope=self.label)

    def zone_ids(self) -> list[str] | None:
        """The ids of the subtree's zones (None: every zone, for a whole tree)."""
        if self.covers_all():
            return None
        assert self.root is not None
        return [z.id for z in self.zones.subtree(self.root)] if self.root in self.zones else []

    def meet(self, zone_ids: Iterable[str]) -> str | None:
        """The smallest zone that holds every one of ``zone_ids`` (the audit log's "where"
        for an action on several), or None when they share none (or there are none)."""
        common: list[str] | None = None
        for zid in zone_ids:
            line = list(reversed(self._ancestry(zid)))  # root first
            if common is None:
                common = line
                continue
            shared = 0
            while shared < min(len(common), len(line)) and common[shared] == line[shared]:
                shared += 1
            common = common[:shared]
        return common[-1] if common else None


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
    ``extra`` maps more tokens' SHA-256 to their principals (from the config). A new token
    works at once but is not written yet: ``keep_admin_token`` keeps its hash once the server
    has started, so a start that fails (a port taken) leaves nothing behind and the next one
    makes and prints a token again."""
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
    return TokenStore({_hash(token): admin, **(extra or {})}), token


def keep_admin_token(data_dir: Path, token: str) -> Path:
    """Write the hash of the admin token ``load_tokens`` generated into ``data_dir``'s token
    file (mode 0600); returns its path. Blocking; OSError when it cannot be written."""
    path = data_dir / TOKEN_FILE
    record = {"tokens": [{"name": "admin", "sha256": _hash(token), "rights": ["admin"]}]}
    _write_private(path, json.dumps(record, indent=2))
    return path


def load_source_password(data_dir: Path, configured: str | None) -> tuple[str, bool]:
    """The global source password, and whether it was generated just now (print it once).
    A generated one is not written yet: ``keep_source_password`` keeps it once the server
    has started (as ``load_tokens``' admin token)."""
    if configured:
        return configured, False
    path = data_dir / SOURCE_PASSWORD_FILE
    if path.exists():
        return path.read_text().strip(), False
    return secrets.token_urlsafe(12), True


def keep_source_password(data_dir: Path, password: str) -> Path:
    """Write a generated source password into ``data_dir`` (mode 0600); returns the file's
    path. Blocking; OSError when it cannot be written."""
    path = data_dir / SOURCE_PASSWORD_FILE
    _write_private(path, password + "\n")
    return path
