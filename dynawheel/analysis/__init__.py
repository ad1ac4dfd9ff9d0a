"""Steps (2)-(3) of the flow: resolve every binary of a tree as its loader would (resolve.py),
then ask questions of the result (graph.py).  See docs/architecture.md."""
