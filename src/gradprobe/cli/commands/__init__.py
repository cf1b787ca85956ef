"""One module per CLI verb. Each defines ``add_parser(subparsers)``, which registers the verb
and sets ``func`` to a thin function that calls one plain function with keyword arguments."""

COMMANDS = ("run", "analyze", "report", "bench", "publish", "baseline", "compare",
            "calibrate", "history", "bisect")
