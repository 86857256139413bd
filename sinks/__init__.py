"""Sinks: the shared worker runtime, the Sink interface, and the built-in sinks."""
