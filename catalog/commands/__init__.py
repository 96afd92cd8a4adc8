"""One module per CLI command, each opening with a one-line docstring; catalog/cli.py gathers them."""
