"""The retry policy that makes engage's processes wait for an unreachable Redis."""

from __future__ import annotations

import copy
import logging

import pytest
from redis import Redis
from redis.exceptions import ConnectionError
from rq.connections import parse_connection
from rq.exceptions import StopRequested

from engage import outages as module
from engage.outages import Outages, WaitingRetry, wait_through_outages


def failing(times: int, then: str = "OK"):
    """A command that fails ``times`` times for want of Redis, then answers ``then``."""
    calls = iter(range(times + 1))

    def do() -> str:
        if next(calls) < times:
            raise ConnectionError("Error 111 connecting. Connection refused.")
        return then

    return do


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(module.time, "sleep", slept.append)
    return slept


@pytest.fixture
def outages() -> Outages:
    return Outages(logging.getLogger("test.outages"), "127.0.0.1:6379/0")


def test_a_command_waits_for_redis_with_backoff_and_the_outage_is_logged_once(
    outages, sleeps, caplog
):
    caplog.set_level(logging.INFO, "test.outages")
    retry = WaitingRetry(outages)

    assert retry.call_with_retry(failing(8), lambda error: None) == "OK"

    assert sleeps == [0, 1, 2, 4, 5, 5, 5, 5]
    unreachable, back = (record.getMessage() for record in caplog.records)
    assert unreachable.startswith("Redis at 127.0.0.1:6379/0 is unreachable (Error 111")
    assert "trying again at least every 5 s" in unreachable
    assert back.startswith("Redis at 127.0.0.1:6379/0 is back after")
    assert outages.recoveries == 1 and outages.down_since is None


def test_a_connection_that_reconnects_at_once_logs_nothing_but_counts_a_recovery(
    outages, sleeps, caplog
):
    # Redis restarted between two commands: the old connection is closed, the next one works.
    caplog.set_level(logging.INFO, "test.outages")

    assert WaitingRetry(outages).call_with_retry(failing(1), lambda error: None) == "OK"

    assert sleeps == [0]
    assert caplog.records == []
    assert outages.recoveries == 1


def test_a_stop_during_the_wait_ends_all_waiting(outages, monkeypatch):
    def stop(seconds: float) -> None:
        raise StopRequested

    monkeypatch.setattr(module.time, "sleep", stop)
    retry = WaitingRetry(outages)

    with pytest.raises(StopRequested):
        retry.call_with_retry(failing(3), lambda error: None)

    assert outages.stopping
    with pytest.raises(ConnectionError):
        retry.call_with_retry(failing(1), lambda error: None)


def test_without_waiting_a_command_fails_at_once(outages, sleeps):
    retry = WaitingRetry(outages)
    with outages.without_waiting(), pytest.raises(ConnectionError):
        retry.call_with_retry(failing(1), lambda error: None)
    assert sleeps == []
    assert retry.call_with_retry(failing(1), lambda error: None) == "OK"


def test_every_connection_reports_to_the_process_outages_also_in_a_rebuilt_pool():
    client = Redis.from_url("redis://127.0.0.1:6390/3")
    outages = wait_through_outages(client, logging.getLogger("test.outages"))

    # RQ's scheduler process rebuilds the worker's connection pool from its settings.
    _, connection_class, settings = parse_connection(client)
    connection = connection_class(**settings)

    assert isinstance(connection.retry, WaitingRetry)
    assert connection.retry.outages is outages
    assert copy.deepcopy(connection.retry).outages is outages
    assert connection.socket_connect_timeout == module.CONNECT_TIMEOUT
    assert outages.where == "127.0.0.1:6390/3"
