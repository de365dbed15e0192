"""The HTTP API: jobs with credits, Supabase-compatible auth under row-level security, live status.

Importing the package loads nothing: FastAPI is imported by `aijobs.api.app`, so commands that
only touch the database (every `aijobs` command but `api` and `dev`) start without it.
"""
