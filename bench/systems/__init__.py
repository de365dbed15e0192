"""Benchmark adapters: one ``<name>_system.py`` module per job system (see ``base.py``)."""
