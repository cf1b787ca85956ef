"""Runs over time: the history, its change points, its page, and the static site."""
