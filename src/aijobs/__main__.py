"""`python -m aijobs` is the `aijobs` command."""

from aijobs.cli import main

main()
