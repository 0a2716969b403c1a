"""Partage's anonymization engine: a pure library (no web, no ORM).

It turns a sensitive table into protected cells (aggregates) or protected microdata, and proves
what it released: every function takes plain values and returns plain values.
"""

__version__ = "0.1.0"
