"""idsync: keeps Protime people addressable by HR employee ids."""

__version__ = "0.1.0"
