"""Engine and sessions: SQLite in WAL mode by default, any SQLAlchemy URL (PostgreSQL) by setting."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.schema import CreateColumn
from sqlalchemy.orm import Session, sessionmaker

from storage.archive import make_private_folder
from storage.models import Base

logger = logging.getLogger(__name__)


def _configure_sqlite(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed row survives power loss, which the C-STORE "Success" promises.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'pedfrac.sqlite3'}"


def open_database(url: str) -> sessionmaker[Session]:
    """Create the engine and the tables that are missing, and return a session factory.

    A SQLite file is created with owner-only permissions, because it lists which studies arrived.
    """
    engine: Engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        _create_private_file(engine.url.database)

    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    logger.info("database ready: %s", engine.url.render_as_string(hide_password=True))
    return sessionmaker(engine, expire_on_commit=False)


def _create_private_file(database: str | None) -> None:
    if not database or database == ":memory:":
        return

    path = Path(database)
    make_private_folder(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def _add_missing_columns(engine: Engine) -> None:
    """Add the nullable columns that a newer pedfrac defines to tables an older one created.

    ``create_all`` creates missing tables but never alters existing ones, so a data folder from an
    earlier version would otherwise fail on its first query.
    """
    # NOTE: this covers added nullable columns only; renamed or retyped columns need real
    # migrations (Alembic), which pedfrac does not have yet.
    existing_tables = set(inspect(engine).get_table_names())
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name not in existing_tables:
                continue

            present = {column["name"] for column in inspect(connection).get_columns(table.name)}
            for column in table.columns:
                if column.name in present or not column.nullable:
                    continue
                ddl = CreateColumn(column).compile(dialect=engine.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
                logger.warning("database upgraded: column %s.%s added", table.name, column.name)
