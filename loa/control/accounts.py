"""Accounts (issue 14): the people who run the network, their personal API tokens and their
browser sessions.

- **Users**: a username (lower case), a display name, a password kept only as an argon2id hash
  (argon2-cffi's defaults: RFC 9106's second recommended setting), roles
  (``loa.control.auth.Role``) and a scope (a zone id whose subtree they act on, or ``*``
  for every zone). The first start with no account makes ``admin`` (scope: the tree's root, or
  ``*`` when it has several) with a random password, shown once by ``loa serve``.
- **Personal tokens**: any number per user, made at random, shown once, kept as their SHA-256
  (a random 256-bit token needs no slow hash), with the time each was made and last used (the
  last use written at most once a minute). A token speaks for its user with the user's roles
  and scope as they are now; it dies with the user.
- **Sessions**: a login (``log_in``) opens one: a random cookie value (kept as its SHA-256,
  in memory: a restart logs everyone out) and a CSRF token, the synchronizer pattern: the
  server keeps the CSRF token with the session and a state-changing request made with the
  cookie must send it back in the ``X-CSRF-Token`` header (``loa.api.middleware``). A session
  unused for ``idle_timeout_s`` ends; so do a user's sessions when their password changes or
  the account is removed.
- **Login attempts** are limited per username and per client address with the server's
  failure throttle (``loa.core.throttle``): after ``login_failures`` wrong passwords
  not yet forgotten (one is forgotten every ``login_forget_s``) a login for that username,
  or from that address, is refused unexamined (``LoginRefused``, 429) until one is
  forgotten. An unknown username costs as much time as a known one and counts the same.

Everything is held in memory (loaded from the store once, at construction: blocking) and
written behind through the store, so checking a token or a session never waits for the disk.
Password hashing and checking (about 0.1 s of CPU each, in C without the GIL) run in a
worker thread: the ``async`` methods.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loa.config import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, SessionsConfig
from loa.control.auth import (
    ALL_ZONES,
    Principal,
    Role,
    RoleError,
    parse_roles,
    rights_of,
    role_names,
)
from loa.control.store import Store
from loa.core.clock import NS_PER_S, Clock
from loa.core.i18n import N_, Explained, Message
from loa.core.throttle import FailureThrottle
from loa.core.zones import ZoneTree, is_alert_group

if TYPE_CHECKING:
    from argon2 import PasswordHasher

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_DISPLAY_CHARS = 200
MAX_TOKEN_NAME_CHARS = 100
TOKEN_TOUCH_S = 60.0  # a token's last use is written at most this often
MAX_SESSIONS = 10_000  # beyond, the oldest sessions end first
FIRST_ADMIN = "admin"
# the first admin's display name: stored in English, shown in the reader's language
FIRST_ADMIN_NAME = N_("Administrator")


class AccountError(Explained, ValueError):
    """A bad username, password, role, scope or name (400); the message says what to give."""


class UnknownAccount(AccountError):
    """No such user, or no such token of the user (404)."""


class AccountExists(AccountError):
    """The username is taken (409)."""


class LastAdmin(AccountError):
    """Removing or demoting the last admin account of the whole tree (409): nobody would be
    left to manage the accounts of every zone."""


class LoginFailed(Explained):
    """Wrong username or password (401); which of the two is not said."""


class LoginRefused(Explained):
    """Too many wrong passwords lately for the username or from the address (429):
    ``wait_s`` (s) until the next try is examined; the message (a msgid and its fields, as
    every ``Explained``) says which and how long."""

    def __init__(self, message: str | Message, /, *, wait_s: float, **fields: object) -> None:
        super().__init__(message, **fields)
        self.wait_s = wait_s


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class User:
    """One account. ``scope``: a zone id, or ``ALL_ZONES``; times are unix seconds."""

    username: str
    display_name: str
    password_hash: str
    roles: frozenset[Role]
    scope: str
    created_at: float
    password_changed_at: float

    def record(self) -> dict[str, Any]:
        """What the store keeps (the hash, never the password)."""
        return {"username": self.username, "display_name": self.display_name,
                "password_hash": self.password_hash, "roles": role_names(self.roles),
                "scope": self.scope, "created_at": self.created_at,
                "password_changed_at": self.password_changed_at}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> User:
        """The user of a stored record."""
        return cls(rec["username"], rec.get("display_name", ""), rec["password_hash"],
                   frozenset(Role(r) for r in rec["roles"]), rec["scope"],
                   float(rec.get("created_at", 0.0)),
                   float(rec.get("password_changed_at", rec.get("created_at", 0.0))))

    def describe(self) -> dict[str, Any]:
        """The API view: everything but the hash."""
        return {"username": self.username, "display_name": self.display_name,
                "roles": role_names(self.roles), "scope": self.scope,
                "created_at": self.created_at, "password_changed_at": self.password_changed_at}

    def principal(self) -> Principal:
        """Who a request of this user speaks for: its rights, roles and scope as they are."""
        return Principal(self.username, rights_of(self.roles),
                         None if self.scope == ALL_ZONES else self.scope, self.roles,
                         self.username)


@dataclass
class PersonalToken:
    """A user's API token, known by its SHA-256; ``last_used_at`` None until used (unix s)."""

    id: str
    username: str
    name: str
    sha256: str
    created_at: float
    last_used_at: float | None = None

    def record(self) -> dict[str, Any]:
        """What the store keeps."""
        return {"id": self.id, "username": self.username, "name": self.name,
                "sha256": self.sha256, "created_at": self.created_at,
                "last_used_at": self.last_used_at}

    def describe(self) -> dict[str, Any]:
        """The API view: without the hash (the token itself is never kept)."""
        return {"id": self.id, "username": self.username, "name": self.name,
                "created_at": self.created_at, "last_used_at": self.last_used_at}


@dataclass
class Session:
    """A browser's login: its user, its CSRF token, the client address it logged in from,
    and when it started and was last used (clock ns)."""

    username: str
    csrf_token: str
    address: str
    started_ns: int
    seen_ns: int


@dataclass
class _Index:
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, PersonalToken] = field(default_factory=dict)  # by SHA-256
    sessions: dict[str, Session] = field(default_factory=dict)  # by the cookie's SHA-256


class Accounts:
    """Users, personal tokens and sessions (see the module docstring). ``clock``: the
    server's (sessions' idle time, login failures); ``wall``: unix time now (records).
    Construction reads the store (blocking: at start-up). Methods that change an account
    raise ``AccountError`` (bad input), ``UnknownAccount`` or ``AccountExists``."""

    def __init__(self, store: Store, zones: ZoneTree, clock: Clock, wall: Callable[[], float],
                 settings: SessionsConfig, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.zones = zones
        self.clock = clock
        self.wall = wall
        self.settings = settings
        self._hasher = hasher
        self._dummy_hash: str | None = None  # checked for unknown usernames (same cost)
        self._index = _Index()
        for rec in store.load_users():
            user = User.from_record(rec)
            self._index.users[user.username] = user
        for rec in store.load_user_tokens():
            token = PersonalToken(**rec)
            if token.username in self._index.users:
                self._index.tokens[token.sha256] = token
        # failures per "user:<name>" and per "address:<key>": counted, never held
        self.login_throttle = FailureThrottle(
            clock.now_ns, free_failures=settings.login_failures,
            forget_s=settings.login_forget_s)

    @property
    def hasher(self) -> PasswordHasher:
        """The argon2id hasher given at construction, or argon2-cffi's default one, made (and
        argon2 imported: 1 MB) at the first hash or check, not by a server nobody signs in
        to (issue 17: RSS). Stateless: a race between two worker threads makes two alike."""
        if self._hasher is None:
            from argon2 import PasswordHasher

            self._hasher = PasswordHasher()
        return self._hasher

    # users

    def ensure_admin(self, password: str | None = None) -> str | None:
        """With no account at all, make ``admin`` (role admin, scope the tree's root, or every
        zone when it has several) with ``password`` (``LOA_ADMIN_PASSWORD``; AccountError if
        it is too short or too long) or, without one, a random password, which it returns to
        show once; else (an account exists, or the password was given) None. Blocking
        (hashes): at start-up. ``first_admin`` then ``keep_first_admin``, at once."""
        made = self.first_admin(password)
        if made is None:
            return None
        self.keep_first_admin(made[0])
        return made[1]

    def first_admin(self, password: str | None = None) -> tuple[User, str | None] | None:
        """``ensure_admin``'s account, made (its password hashed: blocking) but not kept yet,
        with the random password to show once (None when ``password`` was given); None when
        an account exists. A server makes it at construction and keeps it
        (``keep_first_admin``) once it has started: a start that fails keeps no account whose
        password it never showed."""
        if self._index.users:
            return None
        generated = password is None
        password = secrets.token_urlsafe(12) if password is None else self._password(password)
        roots = self.zones.roots()
        scope = roots[0].id if len(roots) == 1 else ALL_ZONES
        now = self.wall()
        user = User(FIRST_ADMIN, FIRST_ADMIN_NAME, self.hasher.hash(password),
                    frozenset({Role.ADMIN}), scope, now, now)
        return user, password if generated else None

    def keep_first_admin(self, user: User) -> None:
        """Keep the account ``first_admin`` made (stored, audited), unless an account was
        made meanwhile."""
        if self._index.users:
            return
        self._put(user)
        self.store.audit("loa", "user.add", user.username,
                         {"roles": role_names(user.roles), "scope": user.scope},
                         zone=None if user.scope == ALL_ZONES else user.scope)

    def get(self, username: str) -> User:
        """The user; UnknownAccount if there is none."""
        user = self._index.users.get(username.strip().lower())
        if user is None:
            raise UnknownAccount(N_("no user {username!r}"), username=username)
        return user

    def users(self) -> list[User]:
        """Every user, by username."""
        return sorted(self._index.users.values(), key=lambda u: u.username)

    def principal(self, username: str) -> Principal | None:
        """The principal of a user as they are now, or None when the account is gone."""
        user = self._index.users.get(username)
        return user.principal() if user is not None else None

    async def add(self, username: Any, password: Any, roles: Any, scope: Any,
                  display_name: Any = "") -> User:
        """A new account (the password hashed beside the loop). ``roles``: a role name, names
        separated by commas, or a list; ``scope``: a zone id or ``*``."""
        name = self._username(username)
        if name in self._index.users:
            raise AccountExists(N_("user {username!r} exists already"), username=name)
        checked_roles = self._roles(roles)
        checked_scope = self._scope(scope)
        shown = self._display_name(display_name, name)
        digest = await asyncio.to_thread(self._hash, self._password(password))
        if name in self._index.users:  # made meanwhile
            raise AccountExists(N_("user {username!r} exists already"), username=name)
        now = self.wall()
        user = User(name, shown, digest, checked_roles, checked_scope, now, now)
        self._put(user)
        return user

    async def update(self, username: str, *, password: Any = None, roles: Any = None,
                     scope: Any = None, display_name: Any = None) -> User:
        """Change what is given (None: unchanged). A new password ends the user's sessions."""
        user = self.get(username)
        new_roles = self._roles(roles) if roles is not None else user.roles
        new_scope = self._scope(scope) if scope is not None else user.scope
        self._keep_an_admin(user, new_roles, new_scope)
        shown = (self._display_name(display_name, user.username) if display_name is not None
                 else user.display_name)
        digest = user.password_hash
        if password is not None:
            digest = await asyncio.to_thread(self._hash, self._password(password))
        user = self.get(username)  # as it is after the await
        self._keep_an_admin(user, new_roles, new_scope)
        changed = User(user.username, shown, digest, new_roles, new_scope, user.created_at,
                       self.wall() if password is not None else user.password_changed_at)
        self._put(changed)
        if password is not None:
            self.close_sessions_of(user.username)
        return changed

    def remove(self, username: str) -> User:
        """Forget the user, their tokens and their sessions. LastAdmin for the last admin of
        the whole tree."""
        user = self.get(username)
        self._keep_an_admin(user)
        del self._index.users[user.username]
        for sha, token in list(self._index.tokens.items()):
            if token.username == user.username:
                del self._index.tokens[sha]
        self.close_sessions_of(user.username)
        self.store.delete_user(user.username)
        return user

    async def check_password(self, username: str, password: str) -> User | None:
        """The user, if ``password`` is theirs; else None (an unknown user costs as much).
        A hash made with older parameters is replaced by one with the current ones."""
        user = self._index.users.get(username.strip().lower())
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return None
        stored = user.password_hash if user is not None else None
        ok, rehashed = await asyncio.to_thread(self._verify, stored, password)
        if not ok or user is None:
            return None
        current = self._index.users.get(user.username)
        if rehashed is not None and current is not None and \
                current.password_hash == user.password_hash:
            current.password_hash = rehashed
            self.store.save_user(current.username, current.record())
        return current

    def _hash(self, password: str) -> str:
        """In a worker thread (so is argon2's first import): ``password``'s argon2id hash."""
        return self.hasher.hash(password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """In a worker thread: whether ``password`` matches ``stored`` (a dummy hash when
        None, for the same cost), and a fresh hash when the stored one's parameters are old."""
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
            stored = self._dummy_hash
            password = "\0" + password  # never the dummy's password
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False, None
        return True, (self.hasher.hash(password) if self.hasher.check_needs_rehash(stored)
                      else None)

    def whole_tree_admin(self, roles: frozenset[Role], scope: str) -> bool:
        """Whether an account of ``roles`` and ``scope`` is an admin of the whole tree: every
        zone (``*``), or the tree's only root."""
        if Role.ADMIN not in roles:
            return False
        roots = self.zones.roots()
        return scope == ALL_ZONES or (len(roots) == 1 and roots[0].id == scope)

    def _keep_an_admin(self, user: User, roles: frozenset[Role] | None = None,
                       scope: str | None = None) -> None:
        """Raise LastAdmin if ``user`` is the last admin of the whole tree and is removed
        (``roles`` None) or would be one no longer with ``roles`` and ``scope``."""
        if not self.whole_tree_admin(user.roles, user.scope):
            return
        if roles is not None and self.whole_tree_admin(roles, scope or user.scope):
            return
        if any(self.whole_tree_admin(u.roles, u.scope) for u in self._index.users.values()
               if u.username != user.username):
            return
        if roles is None:
            raise LastAdmin(N_("{username!r} is the last admin of the whole tree and cannot be "
                               "removed: make another account admin of every zone first"),
                            username=user.username)
        raise LastAdmin(N_("{username!r} is the last admin of the whole tree and must stay "
                           "one: make another account admin of every zone first"),
                        username=user.username)

    def _put(self, user: User) -> None:
        self._index.users[user.username] = user
        self.store.save_user(user.username, user.record())

    def _username(self, value: Any) -> str:
        name = str(value or "").strip().lower()
        if not USERNAME.match(name):
            raise AccountError(N_("username must be 1-64 characters: lower-case letters, "
                                  "digits, '.', '_' or '-', starting with a letter or digit"))
        return name

    @staticmethod
    def _password(value: Any) -> str:
        if not isinstance(value, str) or not MIN_PASSWORD_CHARS <= len(value) \
                <= MAX_PASSWORD_CHARS:
            raise AccountError(N_("password must be text of at least {min_chars} characters"),
                               min_chars=MIN_PASSWORD_CHARS)
        return value

    @staticmethod
    def _roles(value: Any) -> frozenset[Role]:
        try:
            return parse_roles(value)
        except RoleError as exc:
            raise AccountError(exc.message) from None

    def _scope(self, value: Any) -> str:
        scope = str(value or "").strip()
        if scope == ALL_ZONES:
            return scope
        if not scope or scope not in self.zones or is_alert_group(scope):
            raise AccountError(N_("scope must be a zone id or {all_zones!r} (every zone), "
                                  "not {scope!r}"), all_zones=ALL_ZONES, scope=scope)
        return scope

    @staticmethod
    def _display_name(value: Any, username: str) -> str:
        text = " ".join(str(value or "").split())[:MAX_DISPLAY_CHARS]
        return text or username

    # personal tokens

    def create_token(self, username: str, name: Any = "") -> tuple[PersonalToken, str]:
        """A new token for the user: (its record, the token itself, to show once)."""
        user = self.get(username)
        label = " ".join(str(name or "").split())[:MAX_TOKEN_NAME_CHARS]
        secret = secrets.token_urlsafe(32)
        token = PersonalToken(secrets.token_hex(6), user.username, label, _sha256(secret),
                              self.wall())
        self._index.tokens[token.sha256] = token
        self.store.save_user_token(token.id, token.username, token.record())
        return token, secret

    def tokens_of(self, username: str) -> list[PersonalToken]:
        """The user's tokens, oldest first."""
        user = self.get(username)
        return sorted((t for t in self._index.tokens.values() if t.username == user.username),
                      key=lambda t: t.created_at)

    def revoke_token(self, username: str, token_id: str) -> PersonalToken:
        """Revoke one of the user's tokens; UnknownAccount if the user has no such token."""
        for token in self.tokens_of(username):
            if token.id == token_id:
                del self._index.tokens[token.sha256]
                self.store.delete_user_token(token.id)
                return token
        raise UnknownAccount(N_("user {username!r} has no token {token!r}"),
                             username=username, token=token_id)

    def authenticate_token(self, secret: str) -> Principal | None:
        """The principal of a personal token, or None; notes its use (written at most once a
        minute per token)."""
        if not secret:
            return None
        token = self._index.tokens.get(_sha256(secret))
        if token is None:
            return None
        user = self._index.users.get(token.username)
        if user is None:
            return None
        now = self.wall()
        if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_S:
            token.last_used_at = now
            self.store.save_user_token(token.id, token.username, token.record())
        return user.principal()

    # sessions

    async def log_in(self, username: Any, password: Any, address_key: str) -> User:
        """Check a login (``address_key``: the client's, ``FailureThrottle.key_for``). Raises
        LoginRefused, unexamined, while the username or the address has too many wrong
        passwords not yet forgotten; LoginFailed (counted against both) for a wrong one."""
        name = str(username or "").strip().lower()[:64]
        keys = {"user": f"user:{name}", "address": f"address:{address_key}"}
        for which, key in keys.items():
            wait_s = self._refused_for_s(key)
            if wait_s > 0:
                seconds = max(1, math.ceil(wait_s))  # as Retry-After says it
                if which == "user":
                    raise LoginRefused(N_("too many wrong passwords for user {username!r}: "
                                          "try again in {seconds} s"),
                                       wait_s=wait_s, username=name, seconds=seconds)
                raise LoginRefused(N_("too many wrong passwords from your address: try again "
                                      "in {seconds} s"), wait_s=wait_s, seconds=seconds)
        user = await self.check_password(name, password if isinstance(password, str) else "")
        if user is None:
            for key in keys.values():
                if self.login_throttle.failed(key) > 0:
                    self.login_throttle.done(key)  # counted only: the answer is not held
            raise LoginFailed(N_("wrong username or password"))
        return user

    def _refused_for_s(self, key: str) -> float:
        """How long (s) until logins counted against ``key`` are examined again: while
        ``login_failures`` or more are not yet forgotten (0: examined now)."""
        failures = self.login_throttle.describe(key)["failures"]
        excess = failures - (self.settings.login_failures - 1)
        return excess * self.settings.login_forget_s if excess > 0 else 0.0

    def open_session(self, user: User, address: str) -> tuple[str, Session]:
        """A new session for the user: (the cookie's value, the session with its CSRF token)."""
        now = self.clock.now_ns()
        self._sweep(now)
        cookie = secrets.token_urlsafe(32)
        session = Session(user.username, secrets.token_urlsafe(32), address, now, now)
        self._index.sessions[_sha256(cookie)] = session
        return cookie, session

    def session(self, cookie: str, *, touch: bool = True) -> Session | None:
        """The live session of a cookie value, marked used now (unless ``touch`` is False:
        a long-lived stream checking that its session still lives does not keep it alive);
        None when unknown, idle for longer than the timeout (it ends), or its user is gone."""
        if not cookie:
            return None
        key = _sha256(cookie)
        session = self._index.sessions.get(key)
        if session is None:
            return None
        now = self.clock.now_ns()
        if self._idle(session, now) or session.username not in self._index.users:
            del self._index.sessions[key]
            return None
        if touch:
            session.seen_ns = now
        return session

    def csrf_ok(self, session: Session, sent: str) -> bool:
        """Whether ``sent`` is the session's CSRF token (compared in constant time)."""
        return bool(sent) and hmac.compare_digest(session.csrf_token.encode(), sent.encode())

    def close_session(self, cookie: str) -> Session | None:
        """End the session of a cookie value (logout); the session, or None if there was none."""
        return self._index.sessions.pop(_sha256(cookie), None) if cookie else None

    def close_sessions_of(self, username: str) -> int:
        """End every session of the user; how many there were."""
        ended = [k for k, s in self._index.sessions.items() if s.username == username]
        for key in ended:
            del self._index.sessions[key]
        return len(ended)

    def _idle(self, session: Session, now_ns: int) -> bool:
        return now_ns - session.seen_ns > self.settings.idle_timeout_s * NS_PER_S

    def _sweep(self, now_ns: int) -> None:
        """Drop the idle sessions; beyond ``MAX_SESSIONS``, the oldest."""
        sessions = self._index.sessions
        for key in [k for k, s in sessions.items() if self._idle(s, now_ns)]:
            del sessions[key]
        while len(sessions) >= MAX_SESSIONS:
            del sessions[next(iter(sessions))]
