"""locallama: run open-weight language models on your own machine."""

import logging

__version__ = "0.1.0"

# A library's loggers print nothing until an application configures them (``serve``
# does); without this, Python's last-resort handler would add warnings to the CLI's
# one-line errors.
logging.getLogger("locallama").addHandler(logging.NullHandler())
