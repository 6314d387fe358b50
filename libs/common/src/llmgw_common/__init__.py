"""Shared plumbing for the llmgw services: the NATS contract, settings, telemetry.

Kept small and boring on purpose: services depend on it, never on each other.
"""
