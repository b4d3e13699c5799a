"""RocketMQ backend for cozemq (in progress)."""
