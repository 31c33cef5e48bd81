"""Tests of the rq_signals Django app, against the models of tests/testapp."""
