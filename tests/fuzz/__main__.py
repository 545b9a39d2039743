"""``cd tests && python -m fuzz N``: how each function handled N random cases."""

import sys
import warnings

from .core import survey

warnings.simplefilter("error")
sys.exit(1 if survey(int(sys.argv[1]) if len(sys.argv) > 1 else 150) else 0)
