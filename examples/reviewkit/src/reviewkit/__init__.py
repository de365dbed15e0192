"""Example job types for aijobs (docs/job-types.md)."""
