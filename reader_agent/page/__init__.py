"""The counter page: a local web page for the clerk, served by the reader agent.

Built by :func:`reader_agent.page.app.create_app` (no global state); ``reader-agent serve``
runs it on a loopback address only.
"""
