"""The errors cozemq raises. Every one derives from EventBusError.

Each message names the setting or value at fault and what is allowed, and never
carries a secret. ``retriable`` says whether trying the same call again later can help.
"""

from __future__ import annotations


class EventBusError(Exception):
    """Base of every cozemq error."""

    retriable: bool = False


class ConfigurationError(EventBusError, ValueError):
    """A setting is missing, malformed or names something that does not exist."""


class BackendNotInstalled(ConfigurationError):
    """COZE_MQ_TYPE names a known backend whose package is not installed."""


class InvalidArgument(EventBusError, ValueError):
    """A call got a value the contract (or the chosen broker) does not allow."""


class BrokerUnavailable(EventBusError):
    """The broker could not be reached, or stopped answering, within the timeout."""

    retriable = True


class BrokerError(EventBusError):
    """The broker refused a request for a reason other than the ones below."""


class MessageTooLarge(EventBusError, ValueError):
    """A message is larger than the broker accepts. Nothing of the call was sent."""


class NotSupported(EventBusError):
    """The chosen backend cannot do what was asked; cozemq refuses rather than pretend."""


class BusClosed(EventBusError):
    """The bus, producer or consumer was used after close()."""
