"""The Store contract against every backend (SQLite, moto, fake-gcs-server, Azurite), its error mapping, and the
pipeline on each cloud store."""
