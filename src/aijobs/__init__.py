"""aijobs: a PostgreSQL-backed job system for AI work."""

__version__ = "0.1.0"
