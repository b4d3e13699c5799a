"""Settings come from the environment and .env with Coze's variable names; secrets stay hidden."""

from pathlib import Path

import pytest
from cozemq_nats.settings import NatsSettings

import cozemq
from cozemq.settings import Settings, load_settings, masked

SECRET = "s3cr3t-Value-never-shown"


def test_coze_variables_keep_their_names_and_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COZE_MQ_TYPE", "nats")
    monkeypatch.setenv("MQ_NAME_SERVER", "127.0.0.1:4222")
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "3")
    monkeypatch.setenv("NATS_USE_JETSTREAM", "false")
    settings = load_settings(Settings)
    nats = load_settings(NatsSettings)
    assert (settings.mq_type, settings.name_server) == ("nats", "127.0.0.1:4222")
    assert (nats.stream_replicas, nats.use_jetstream) == (3, False)


def test_a_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COZE_MQ_TYPE", raising=False)
    (tmp_path / ".env").write_text("COZE_MQ_TYPE=memory\nCOZEMQ_MAX_DELIVERIES=7\n")
    settings = load_settings(Settings)
    assert (settings.mq_type, settings.max_deliveries) == ("memory", 7)


def test_explicit_env_wins_over_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COZEMQ_CONCURRENCY", "3")
    assert load_settings(Settings, {"COZEMQ_CONCURRENCY": "9"}).concurrency == 9


def test_invalid_value_names_the_variable_and_what_is_allowed() -> None:
    with pytest.raises(cozemq.ConfigurationError) as info:
        load_settings(NatsSettings, {"NATS_STREAM_REPLICAS": "0"})
    assert "NATS_STREAM_REPLICAS" in str(info.value)
    assert "greater than or equal to 1" in str(info.value)


def test_secrets_are_masked_in_repr_and_listings() -> None:
    nats = load_settings(NatsSettings, {"NATS_PASSWORD": SECRET, "NATS_TOKEN": SECRET,
                                        "NATS_NKEY_SEED": SECRET, "NATS_JWT_TOKEN": SECRET})
    assert SECRET not in repr(nats)
    assert SECRET not in str(masked(nats))
    assert masked(nats)["NATS_PASSWORD"] == "******"


def test_secrets_never_appear_in_errors() -> None:
    with pytest.raises(cozemq.ConfigurationError) as info:
        load_settings(NatsSettings, {"NATS_PASSWORD": SECRET, "NATS_ACK_WAIT": "soon"})
    assert "NATS_ACK_WAIT" in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(cozemq.ConfigurationError) as info:
        cozemq.EventBus.from_env({"COZE_MQ_TYPE": "nats", "NATS_SERVER_URL": "nats://127.0.0.1:1",
                                  "NATS_JWT_TOKEN": SECRET})
    assert SECRET not in str(info.value)


def test_urls_with_credentials_are_redacted_in_repr() -> None:
    bus = cozemq.EventBus.from_env({"COZE_MQ_TYPE": "nats",
                                    "NATS_SERVER_URL": f"nats://admin:{SECRET}@127.0.0.1:4222"})
    assert SECRET not in repr(bus)
    assert "***@127.0.0.1:4222" in repr(bus)
