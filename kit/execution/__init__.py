"""Execution: the Broker protocol, the paper broker, the order manager and real brokers."""
