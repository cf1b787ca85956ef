"""gradprobe analysis: statistics over seeds, figures and the HTML report."""
