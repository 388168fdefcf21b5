"""``radllama train`` and ``radllama export``."""


def train_command() -> None:
    """Train (placeholder until implemented)."""
    raise NotImplementedError


def export_command() -> None:
    """Export (placeholder until implemented)."""
    raise NotImplementedError
