"""Statistics across seeds: estimators, summaries, paired effects, depth trends, theory."""
