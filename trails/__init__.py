"""Fixes: schema, readers, validation and quarantine, projection, Parquet store,
timeline kernels and the synthetic population generator.

`trails` depends on nothing else in tagtrail (`api -> geofence -> trails`).
"""
