"""The interface contracts, each one suite run against every implementation: stores/, adapters/, forwarders/."""
