"""Run slow Django signal receivers on an RQ worker, after commit, with retries."""
