"""RadLlama: turn open LLMs into local radiology-report assistants (findings -> impression)."""

__version__ = "0.1.0"
