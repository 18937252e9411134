"""Model card templates (Markdown with `{field}` placeholders), rendered by `hf_scratchgpt.cards`."""
