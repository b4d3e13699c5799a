"""Pulsar backend for cozemq (in progress)."""
