"""Azure Functions entry point (Python v2 model): the FunctionApp with the callback, derive and reconcile
functions of the App of the function's settings."""

from tavus_callbacks.adapters.azure import function_app
from tavus_callbacks.app import App

callbacks = App.from_env()
app = function_app(callbacks)

__all__ = ["app", "callbacks"]
