"""The router: takes in every collector's messages, filters them by labels, publishes per route."""
