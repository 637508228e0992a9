"""Offline behavioural measurement: reply runs, judge fitting and validation, the behaviour report."""
