"""What the table readers share: the limits an uploaded table is held to, the errors for a file
that is not a readable table or is over a limit, and the count of decoded bytes against the
decoded-size limit.
"""

from __future__ import annotations

from dataclasses import dataclass


class TableError(ValueError):
    """The file cannot be read as a table (the message says why)."""


class LimitExceeded(TableError):
    """The table is larger than one of the limits (the message names it)."""


@dataclass(frozen=True)
class Limits:
    """The most an uploaded table may hold; None: no limit."""

    rows: int | None = None
    columns: int | None = None
    cells: int | None = None
    decoded_bytes: int | None = None


@dataclass
class Budget:
    """Decoded bytes written so far, against ``Limits.decoded_bytes``."""

    limit: int | None
    spent: int = 0

    def spend(self, size: int) -> None:
        self.spent += size
        if self.limit is not None and self.spent > self.limit:
            raise LimitExceeded(f"the table is more than {self.limit} bytes once decoded; at "
                                f"most {self.limit} are accepted")
