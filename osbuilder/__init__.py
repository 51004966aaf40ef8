"""osbuilder: immutable A/B edge OS images with k3s, built from Debian."""

__version__ = "0.1.0"
