"""Google Cloud Functions entry point: `--entry-point tavus_callback` (and `reconcile` for Cloud Scheduler)."""

from tavus_callbacks.adapters.gcp import tavus_callback

__all__ = ["tavus_callback"]
