"""Google Cloud Functions entry points: `--entry-point tavus_callback` (HTTP; Cloud Scheduler calls its /reconcile
path) and `--entry-point tavus_derive` (the bucket's `finalized` events through Eventarc), the functions of the App
of the function's settings."""

from tavus_callbacks.adapters.gcp import functions
from tavus_callbacks.app import App

callbacks = App.from_env()
tavus_callback, tavus_derive = functions(callbacks)

__all__ = ["callbacks", "tavus_callback", "tavus_derive"]
