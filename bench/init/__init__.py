"""Initial states bit-identical to ``torch.nn``: init schemes, MT19937, device streams."""
