"""Simulated endpoints and (later) the load tester that runs fleets of them."""
