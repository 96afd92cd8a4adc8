"""Allow `python -m catalog`."""

from catalog.cli import main

main()
