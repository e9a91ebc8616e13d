"""A database made by an earlier release: the columns this release added are added in place, old rows kept; a
column old rows could not fill is refused with its name, before anything is changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from api.audit import SchemaError, audit_log, create_schema, make_engine


def _old_database(path: Path, drop: set[str]) -> None:
    """audit_log as a release without the ``drop`` columns made it, with one row; the other tables as they are."""
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    keep = [c.name for c in audit_log.columns if c.name not in drop]
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE audit_log")
        db.execute(f"CREATE TABLE audit_log ({', '.join(keep)})")
        row = {"id": 1, "request_id": "r-1", "ts": "2026-01-01 00:00:00", "method": "POST", "route": "/v1/check",
               "status": 200, "outcome": "ok", "latency_ms": 3.0}  # fmt: skip
        cols = [c for c in keep if c in row]
        db.execute(
            f"INSERT INTO audit_log ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols]
        )


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[1] for r in db.execute("PRAGMA table_info(audit_log)")]


def test_columns_a_later_release_added_are_added_and_old_rows_kept(tmp_path: Path) -> None:
    db = tmp_path / "tcm.db"
    _old_database(db, {"models", "card_ids"})
    assert "models" not in _columns(db)
    create_schema(make_engine(f"sqlite:///{db}"))  # what tcm serve does at start
    assert {"models", "card_ids"} <= set(_columns(db))
    with sqlite3.connect(db) as db_:
        assert db_.execute("SELECT request_id, models FROM audit_log").fetchall() == [("r-1", None)]
    create_schema(make_engine(f"sqlite:///{db}"))  # and again: nothing left to do


def test_a_column_old_rows_cannot_fill_is_refused_by_name_before_any_change(tmp_path: Path) -> None:
    db = tmp_path / "tcm.db"
    _old_database(db, {"models", "outcome"})  # outcome is NOT NULL
    before = _columns(db)
    with pytest.raises(SchemaError, match=r"audit_log\.outcome cannot be added to the existing rows"):
        create_schema(make_engine(f"sqlite:///{db}"))
    assert _columns(db) == before  # models was not added either
