"""Event Grid beyond the forwarder contract (test_forwarder_contract.py): the topic endpoint a forward URL names."""

from __future__ import annotations

import pytest
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.forward.eventgrid import EventGridForwarder


def test_the_topic_hostname_becomes_the_https_events_endpoint() -> None:
    assert EventGridForwarder.from_url("eventgrid://my-topic.westus2-1.eventgrid.azure.net", {}).endpoint == \
        "https://my-topic.westus2-1.eventgrid.azure.net/api/events"
    assert EventGridForwarder.from_url("eventgrid://127.0.0.1:9000?scheme=http", {}).endpoint == \
        "http://127.0.0.1:9000/api/events"
    with pytest.raises(ConfigError, match="scheme"):
        EventGridForwarder.from_url("eventgrid://host?scheme=ftp", {})
