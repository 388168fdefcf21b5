"""``radllama eval`` and ``radllama compare``."""


def eval_command() -> None:
    """Score prediction files (placeholder until implemented)."""
    raise NotImplementedError


def compare_command() -> None:
    """Compare systems (placeholder until implemented)."""
    raise NotImplementedError
