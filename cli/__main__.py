"""`python -m stepledger.cli` runs the same command line as `stepledger`."""

from stepledger.cli.app import main

main()
