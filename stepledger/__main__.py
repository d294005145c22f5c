"""`python -m stepledger` runs the same command line as `stepledger`."""

from stepledger.cli.app import main

main()
