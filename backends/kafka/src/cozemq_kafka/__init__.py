"""Kafka backend for cozemq (in progress)."""
