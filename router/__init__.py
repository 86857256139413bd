"""The router: takes in every collector's messages, filters them by labels and publishes them per route."""
