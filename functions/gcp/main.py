"""Google Cloud Functions entry points: `--entry-point tavus_callback` (HTTP; Cloud Scheduler calls its /reconcile
path) and `--entry-point tavus_derive` (the bucket's `finalized` events through Eventarc)."""

from tavus_callbacks.adapters.gcp import tavus_callback, tavus_derive

__all__ = ["tavus_callback", "tavus_derive"]
