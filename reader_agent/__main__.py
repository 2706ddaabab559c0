"""``python -m reader_agent``: the same as the ``reader-agent`` command."""

from reader_agent.cli import main

main()
