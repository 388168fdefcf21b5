"""radllama.data: report collections → ``{train,validation,test}.jsonl`` + ``manifest.json``."""

from radllama.data.openi import build_openi_splits

__all__ = ["build_openi_splits"]
