"""Instagram's 64-bit, time-ordered ids.

41 bits of milliseconds since SHUTTER_EPOCH_MS, 13 bits of logical shard and
10 bits of a per-millisecond sequence. Ids sort by creation time, so feeds
and cursors need no extra column.

On PostgreSQL the ids are made by the database function `shutter_next_id()`
that the first migration installs (as Instagram did), so any number of API
and worker processes stay unique. SQLite has no such function, so every
connection registers `make_id` below under the same name; there the shard
bits carry the process id, which keeps concurrent processes apart.
"""
from __future__ import annotations

import base64
import os
import threading
import time

SHUTTER_EPOCH_MS = 1293840000000  # 2011-01-01T00:00:00Z
SHARD_BITS = 13
SEQUENCE_BITS = 10
_MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
MAX_ID = (1 << 63) - 1  # ids are signed 64-bit (PostgreSQL bigint, SQLite INTEGER)
# The last second a time cursor can name: only 40 of the 41 time bits fit under
# MAX_ID (late 2045), and a bound past it overflows the database's integer.
LAST_ID_SECOND = (SHUTTER_EPOCH_MS + (1 << (63 - SHARD_BITS - SEQUENCE_BITS))) // 1000 - 1


class _IdMaker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def __call__(self) -> int:
        shard = os.getpid() % (1 << SHARD_BITS)
        with self._lock:
            now = int(time.time() * 1000)
            if now <= self._last_ms:
                now = self._last_ms
                self._sequence = (self._sequence + 1) & _MAX_SEQUENCE
                if self._sequence == 0:  # 1024 ids this millisecond: wait for the next
                    while now <= self._last_ms:
                        now = int(time.time() * 1000)
            else:
                self._sequence = 0
            self._last_ms = now
            return ((now - SHUTTER_EPOCH_MS) << (SHARD_BITS + SEQUENCE_BITS)) | (
                shard << SEQUENCE_BITS
            ) | self._sequence


make_id = _IdMaker()


def min_id_for_millis(millis: int) -> int:
    """The smallest id that can have been made at `millis` (for time cursors)."""
    return max(millis - SHUTTER_EPOCH_MS, 0) << (SHARD_BITS + SEQUENCE_BITS)


def millis_of_id(id_: int) -> int:
    """When an id was made, in Unix milliseconds (its 41 time bits)."""
    return (id_ >> (SHARD_BITS + SEQUENCE_BITS)) + SHUTTER_EPOCH_MS


def shortcode(id_: int) -> str:
    """Instagram's shortcode: the id in URL-safe base64, without padding."""
    raw = id_.to_bytes(8, "big").lstrip(b"\0") or b"\0"
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def id_from_shortcode(code: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (ValueError, TypeError):
        return None
    if not raw or len(raw) > 8:
        return None
    value = int.from_bytes(raw, "big")
    return value if value <= MAX_ID else None  # 8 bytes can exceed a signed 64-bit id


# PostgreSQL: Instagram's published function, installed by the first migration.
PG_NEXT_ID_SQL = f"""
CREATE SEQUENCE IF NOT EXISTS shutter_id_seq;
CREATE OR REPLACE FUNCTION shutter_next_id(OUT result bigint) AS $$
DECLARE
    our_epoch bigint := {SHUTTER_EPOCH_MS};
    seq_id bigint;
    now_millis bigint;
    shard_id int := coalesce(nullif(current_setting('shutter.shard_id', true), ''), '1')::int;
BEGIN
    SELECT nextval('shutter_id_seq') % 1024 INTO seq_id;
    SELECT FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) INTO now_millis;
    result := (now_millis - our_epoch) << 23;
    result := result | ((shard_id % 8192) << 10);
    result := result | (seq_id);
END;
$$ LANGUAGE PLPGSQL;
"""
PG_DROP_NEXT_ID_SQL = """
DROP FUNCTION IF EXISTS shutter_next_id();
DROP SEQUENCE IF EXISTS shutter_id_seq;
"""
