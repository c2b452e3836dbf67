"""The SQLite connection: opening, named migrations, transactions, and the chunked `IN (...)` query."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from reasonry.errors import ConfigError, InputError, db_timeout, is_locked
from reasonry.store.migrations import MIGRATIONS, statements

CHUNK = 900  # SQLite's default limit on bound parameters is 999


def marks(values: Sized) -> str:
    """`?,?,?` for an `IN (...)` list (`NULL` when empty, so the SQL stays valid and matches nothing)."""
    return ",".join("?" * len(values)) or "NULL"


class StoreBase:
    """One connection, one writer per process, WAL mode, small transactions."""

    def __init__(self, path: str | Path = "reasonry.db") -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise InputError(f"--db {self.path}: folder '{self.path.parent}' does not exist; create it first")
        self.lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(self.path, timeout=db_timeout(), isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if is_locked(exc):
                raise
            raise InputError(f"--db {self.path}: not a reasonry database ({exc})") from None

    @classmethod
    def existing(cls, path: str | Path) -> Self:
        """Open a database that must already exist (commands that read runs must not create an empty one)."""
        if not Path(path).exists():
            raise InputError(f"--db {path}: no such database; give the --db that `reasonry generate` wrote")
        return cls(path)

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise ConfigError(f"--db {self.path}: made by a newer reasonry (schema {version}); upgrade reasonry")
        for number, (_name, script) in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested use joins the outer one. Thread-safe through `lock`."""
        with self.lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self.lock:
            return self.conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def _chunked(self, sql: str, keys: Iterable[Any], before: Sequence[Any] = ()) -> Iterator[sqlite3.Row]:
        """Rows of `sql` (one `{marks}` for an `IN (...)` list) for every key, 900 keys per query."""
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            yield from self._all(sql.format(marks=marks(chunk)), [*before, *chunk])
