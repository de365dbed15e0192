"""Typed queries by aggregate, one class per query file; `Session` holds one of each."""
