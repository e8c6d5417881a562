"""Tests against real servers started by the ``devstack`` fixture."""
