"""dynawheel's example package: a CMake-built extension (libgreet + the system's libyaml)."""

from ._yamlgreet import greet, keys

__all__ = ["greet", "keys"]
