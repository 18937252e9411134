"""`python -m hf_scratchgpt <verb> ...` is the same as `scratchgpt <verb> ...`."""

import sys

from .cli import main

sys.exit(main())
