"""``radllama serve`` and ``radllama chat``."""


def serve_command() -> None:
    """Serve the OpenAI-compatible API (placeholder until implemented)."""
    raise NotImplementedError


def chat_command() -> None:
    """Terminal chat (placeholder until implemented)."""
    raise NotImplementedError
