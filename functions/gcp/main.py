"""Google Cloud Functions entry point: `--entry-point tavus_callback` (Cloud Scheduler calls its /reconcile path)."""

from tavus_callbacks.adapters.gcp import tavus_callback

__all__ = ["tavus_callback"]
