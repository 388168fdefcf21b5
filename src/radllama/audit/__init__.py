"""What a tuned model carries out of its training reports: `radllama audit` (docs/privacy.md)."""
