"""The prompt format: one saved object used by training, generation and serving alike.

A :class:`PromptStyle` turns findings (plus, optionally, impressions of the most similar
*training* reports) into the text the model sees. It renders through the tokenizer's own
chat template (Llama-2 chat format for Llama-2-chat and radllama-mini); a tokenizer with
no template gets the documented Alpaca-style fallback. It is saved as ``prompt_style.yaml``
beside every trained model so that no stage can render differently from another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_text

INSTRUCTION = "Derive the impression from findings in the radiology report"
DEFAULT_SYSTEM = "You are a radiology assistant. Answer with a concise impression, as a radiologist writes it."
PROMPT_STYLE_FILE = "prompt_style.yaml"

# The Llama-2 chat template (as Meta ships it), used by radllama-mini's tokenizer:
# <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s>
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)


@dataclass
class PromptStyle:
    """How a findings -> impression request becomes model input.

    Attributes:
        instruction: the task instruction (the paper's by default).
        system: system prompt, or None for none.
        retrieval_k: how many impressions of the most similar training reports to show
            in the prompt (0 = plain zero-shot instruction, as in the paper).
        use_chat_template: render through ``tokenizer.apply_chat_template`` when the
            tokenizer has one; otherwise (or when False) use the Alpaca-style fallback.
    """

    instruction: str = INSTRUCTION
    system: str | None = DEFAULT_SYSTEM
    retrieval_k: int = 0
    use_chat_template: bool = True

    def user_message(self, findings: str, examples: list[str] | None = None) -> str:
        """The user turn: instruction, optional similar impressions, then the findings."""
        parts = [self.instruction + "."]
        if examples:
            listed = "\n".join(f"- {e}" for e in examples)
            parts.append(f"Impressions of similar earlier reports:\n{listed}")
        parts.append(f"Findings: {findings}")
        return "\n\n".join(parts)

    def messages(self, findings: str, examples: list[str] | None = None) -> list[dict[str, str]]:
        """Chat messages for one request."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": self.user_message(findings, examples)})
        return msgs

    def render(self, tokenizer: Any, findings: str, examples: list[str] | None = None) -> str:
        """Prompt text ending exactly where the model's answer begins."""
        return self.render_messages(tokenizer, self.messages(findings, examples))

    def render_messages(self, tokenizer: Any, messages: list[dict[str, str]]) -> str:
        """Render a conversation (ending with a user turn) for generation."""
        if self.use_chat_template and getattr(tokenizer, "chat_template", None):
            return _apply_template(tokenizer, messages)
        # Alpaca-style fallback: "### System/Input/Response:" blocks, answer after the last header.
        text = tokenizer.bos_token or ""
        for m in messages:
            header = {"system": "System", "user": "Input", "assistant": "Response"}[m["role"]]
            text += f"### {header}:\n{m['content'].strip()}\n\n"
        return text + "### Response:\n"

    def answer_text(self, impression: str) -> str:
        """The target continuation after the prompt (the eos token is appended by the caller)."""
        return " " + impression.strip()

    def save(self, folder: Path) -> None:
        """Write ``prompt_style.yaml`` into ``folder``."""
        atomic_write_text(Path(folder) / PROMPT_STYLE_FILE, yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def load(cls, folder: Path) -> PromptStyle:
        """Read ``prompt_style.yaml`` from ``folder`` (defaults when the folder has none)."""
        path = Path(folder) / PROMPT_STYLE_FILE
        if not path.is_file():
            return cls()
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise RadLlamaError(f"{path}: unknown prompt-style keys {sorted(unknown)}")
        return cls(**data)


def _apply_template(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The tokenizer's chat template; a template that refuses the messages is one clear error.

    Templates signal refusal with jinja's ``raise_exception`` (Mistral-Instruct and Gemma accept
    no system role); a traceback from inside jinja tells a user nothing about what to change.
    """
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as exc:
        if messages and messages[0]["role"] == "system":
            try:
                tokenizer.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=True)
            except TemplateError:
                pass
            else:
                raise RadLlamaError(
                    f"this model's chat template accepts no system message ({exc}): set prompt.system=null in "
                    f"the training config, or system: null in the model folder's {PROMPT_STYLE_FILE}"
                ) from exc
        raise RadLlamaError(f"this model's chat template refused the messages: {exc}") from exc
