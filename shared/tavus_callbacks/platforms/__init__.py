"""The services of each cloud an adapter calls: secrets, metrics, logging and schedulers' identity checks."""
