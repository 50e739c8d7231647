"""casectl: the command line of operators and auditors (a client like any other)."""
