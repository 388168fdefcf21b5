"""``radllama generate``."""


def generate_command() -> None:
    """Generate (placeholder until implemented)."""
    raise NotImplementedError
