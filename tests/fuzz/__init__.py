"""The fuzzer: atheris targets for every input kind dynawheel reads (see run.py, targets.py)."""
