"""User-facing errors: the CLI prints these as one clear line, never a traceback."""


class RadLlamaError(Exception):
    """A mistake in input, configuration or environment that the user can fix."""
