"""Steps (4)-(5) of the flow: what to vendor (collect.py), the edits (plan.py), the loader shim
(shim.py), and repair_wheel / repair_tree (pipeline.py).  See docs/architecture.md."""
