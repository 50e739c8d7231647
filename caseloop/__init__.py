"""The case loop's client API, settings, logging and the embedded stack launcher."""
