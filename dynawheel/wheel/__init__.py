"""Wheel archives and metadata; knows nothing of binaries."""
