"""lairchat's tests, run with trial."""
