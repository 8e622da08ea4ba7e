"""End-to-end tests: real servers started as subprocesses, real clients over 127.0.0.1."""
