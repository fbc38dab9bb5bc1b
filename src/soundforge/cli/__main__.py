"""`python -m soundforge.cli`: the `soundforge` command."""

from . import main

main()
