"""The admin CLI ``idsync``. Parsing and printing only; the work lives in the service modules."""

from sync.cli._main import app, main

__all__ = ["app", "main"]
