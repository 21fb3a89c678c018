"""The report stage's folder, named once: `report.html` (self-contained, figures embedded), `report.md` and the
figures it links."""

REPORT = "report"
"""The stem of `report.html` and `report.md`."""
FIGURES = "figures"
"""`figures/<name>.png`, linked from the Markdown twin."""
