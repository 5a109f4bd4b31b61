"""``python -m cartesia_stt_async``: the ``cartesia-stt`` command."""

import sys

from .cli import main

sys.exit(main())
