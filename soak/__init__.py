"""The soak run: many concurrent streams of every class on one uvicorn, for minutes (``make soak``)."""
