"""Hostile input, fuzzing (with its regression inputs), property tests, soak, schemathesis, serve under crash
and concurrency."""
