"""Helpers shared by the tests: real servers, real containers, real processes."""
