"""Keyset pagination: a query fetches `count + 1` rows, so that the extra row
tells whether another page follows, without a COUNT."""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

Row = TypeVar("Row")


def split_page(rows: Sequence[Row], count: int, cursor: Callable[[Row], object] = lambda row: row
               ) -> tuple[list[Row], object | None]:
    """The first `count` rows and the cursor of the last one, or None at the end."""
    rows = list(rows)
    if len(rows) > count:
        return rows[:count], cursor(rows[count - 1])
    return rows, None
