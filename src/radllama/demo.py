"""``radllama demo``: the whole pipeline on the embedded default."""


def demo_command() -> None:
    """Run the demo (placeholder until implemented)."""
    raise NotImplementedError
