"""``python -m torchmeans``: the command line."""

from torchmeans.cli import main

main()
