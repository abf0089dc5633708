"""Zones: GeoJSON and schedules, compiled zone arrays, Numba signed-distance
kernels, the breach rules and `detect`.

Depends on `trails`; never imported by it.
"""
