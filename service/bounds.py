"""Bounds of the values that path and query parameters carry to the database.

Out of them, the database driver fails (SQLite holds 64-bit integers, PostgreSQL's INTEGER 32
bits, and neither takes a NUL byte in text), which would be a 500: they are a 422 instead.
"""

from __future__ import annotations

# The narrower INTEGER of the two backends: PostgreSQL's 32 bits.
DB_INT_MAX = 2**31 - 1
# Printable text: no C0 control character (NUL among them) nor DEL.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
