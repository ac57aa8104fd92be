"""Every foreign key has an index that leads with its columns, on the migrated
schema itself: a delete of the referenced row (and an ON DELETE CASCADE)
then finds the referencing rows by index instead of scanning their table."""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import text

from models import make_engine

# PostgreSQL indexes no foreign key by itself. An index supports a key when
# its leading columns are the key's columns (in any order); partial ones do not.
PG_UNINDEXED_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text AS table_name, c.conname,
       array_to_string(ARRAY(SELECT a.attname FROM unnest(c.conkey) AS k(attnum)
                             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum), ',')
FROM pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
  AND NOT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = c.conrelid AND i.indpred IS NULL
      AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
      AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)
ORDER BY 1, 2
"""


def _postgresql_unindexed(connection) -> list[str]:
    return [f"{table}.{name} ({columns})" for table, name, columns in connection.execute(text(PG_UNINDEXED_FOREIGN_KEYS))]


def _sqlite_index_prefixes(connection, table: str) -> list[list[str]]:
    """The column lists of the table's full indexes (a composite primary key's too)."""
    prefixes = []
    for _seq, name, _unique, _origin, partial in connection.exec_driver_sql(f'PRAGMA index_list("{table}")'):
        if not partial:
            columns = connection.exec_driver_sql(f'PRAGMA index_info("{name}")').all()
            prefixes.append([column for _seqno, _cid, column in sorted(columns)])
    return prefixes


def _sqlite_unindexed(connection) -> list[str]:
    tables = connection.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").scalars().all()
    unindexed = []
    for table in tables:
        keys = defaultdict(list)
        for key_id, _seq, referred, column, *_ in connection.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")'):
            keys[(key_id, referred)].append(column)
        indexes = _sqlite_index_prefixes(connection, table)
        for (_, referred), columns in sorted(keys.items()):
            if not any(set(index[:len(columns)]) == set(columns) for index in indexes):
                unindexed.append(f"{table} -> {referred} ({','.join(columns)})")
    return unindexed


def test_every_foreign_key_has_a_supporting_index(stack):
    engine = make_engine(stack["database_url"])
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                unindexed = _postgresql_unindexed(connection)
            else:
                unindexed = _sqlite_unindexed(connection)
            assert connection.execute(text("SELECT count(*) FROM users")).scalar() is not None  # the schema is there
    finally:
        engine.dispose()
    assert unindexed == [], "foreign keys without an index that leads with their columns:\n" + "\n".join(unindexed)
