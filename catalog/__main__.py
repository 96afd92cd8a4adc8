"""Allow `python -m catalog`."""

from catalog.cli import main

if __name__ == "__main__":  # scan workers import this module again (multiprocessing): never run the CLI there
    main()
