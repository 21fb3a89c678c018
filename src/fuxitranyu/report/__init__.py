"""The report stage: one self-contained HTML page (and a Markdown twin) built only from the stages' artifacts."""
