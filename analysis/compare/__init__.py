"""The regression gate: two sides matched cell by cell, tested, turned into verdicts."""
