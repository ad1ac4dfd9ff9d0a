"""Step (7) of the flow: a static package index of wheels (index.py) and a server for it (serve.py).
See docs/architecture.md."""
