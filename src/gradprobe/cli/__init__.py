"""The command line: ``gradprobe VERB``, one module per verb in :mod:`gradprobe.cli.commands`."""
