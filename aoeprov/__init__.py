"""aoeprov: declarative provisioning of ATA over Ethernet storage."""

# The single source of the version: pyproject.toml reads it from here (a literal, so the
# command line starts without importlib.metadata).
__version__ = "0.1.0"
