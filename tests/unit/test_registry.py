"""COZE_MQ_TYPE picks the backend; wrong values say what is allowed or what to install."""

import time

import pytest

import cozemq
from cozemq import registry


def test_unknown_type_lists_the_valid_values() -> None:
    with pytest.raises(cozemq.ConfigurationError) as info:
        cozemq.EventBus.from_env({"COZE_MQ_TYPE": "rabbitmq"})
    message = str(info.value)
    assert "'rabbitmq'" in message
    for name in ("nats", "kafka", "nsq", "rmq", "rocketmq", "pulsar", "memory"):
        assert name in message


def test_unset_type_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COZE_MQ_TYPE", raising=False)
    with pytest.raises(cozemq.ConfigurationError, match="COZE_MQ_TYPE is not set"):
        cozemq.EventBus.from_env({})


def test_known_backend_not_installed_names_the_pip_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.KNOWN_BACKENDS, "amqp", "amqp")  # known, never installed
    with pytest.raises(cozemq.BackendNotInstalled, match=r'pip install "cozemq\[amqp\]"'):
        cozemq.EventBus.from_env({"COZE_MQ_TYPE": "amqp"})


def test_values_are_case_and_space_insensitive() -> None:
    bus = cozemq.EventBus.from_env({"COZE_MQ_TYPE": " Memory "})
    assert bus.backend.name == "memory"


def test_backends_load_lazily_through_entry_points() -> None:
    started = time.perf_counter()
    cls = registry.backend_class("nats")
    assert callable(cls)
    assert time.perf_counter() - started < 5
    assert "nats" in registry.kit_names()
