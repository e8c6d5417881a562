"""Fault injection against real servers: killed workers, restarted servers,
poison documents. Every test checks that nothing is lost or duplicated."""
