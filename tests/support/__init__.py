"""Fixtures and helpers every test folder uses: storage emulators (servers), buses (bus_servers), `serve` as a
subprocess (serve_fixture) and the fake vendor API (fake_tavus), registered as plugins by tests/conftest.py."""
