"""Azure Functions entry point (Python v2 model): the FunctionApp with the callback, derive and reconcile
functions."""

from tavus_callbacks.adapters.azure import app

__all__ = ["app"]
