"""CLI verbs beyond the core ones in cli.py, one module each, found automatically.

A module here defines `add_parser(subparsers) -> argparse.ArgumentParser`, adding its verb, and
`main(args) -> None`, which does the work (through brainbench.api where it can) and raises a
BrainbenchError for anything a user got wrong.
"""
