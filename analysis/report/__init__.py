"""The HTML report: figures, headline, findings, sections, and the shared page machinery."""
