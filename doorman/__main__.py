"""``python -m doorman ...``: the same as the ``doorman`` command."""

from doorman.cli import main

main()
