"""The collector: discovers a Docker host's containers and publishes their statistics."""
