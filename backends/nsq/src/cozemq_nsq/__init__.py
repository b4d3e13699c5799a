"""Nsq backend for cozemq (in progress)."""
