"""MiniTower's runner agent: leases runs over HTTP and executes them.

It talks to the control plane over HTTP only (``client``), never to the database.
"""
