"""The HTTP API: jobs with credits, Supabase-compatible auth under row-level security, live status."""

from aijobs.api.app import create_app

__all__ = ["create_app"]
