"""`python -m vipr` = the `vipr` command (how supervisors start roles with this interpreter)."""

from vipr.cli import main

main()
