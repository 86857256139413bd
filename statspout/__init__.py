"""Statspout: routes Docker container statistics over ZeroMQ to the stores people run."""

__version__ = "0.1.0"
