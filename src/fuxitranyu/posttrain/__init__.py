"""Post-training: SFT and DPO as pipeline stages on TRL, offline demo data, and the `chat` / `generate` commands."""
