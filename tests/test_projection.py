"""Projection (trails.projection, trails.projection_op): bit-identical to the contract's transformer.

CONTRACT.md "Geometry": ``Transformer.from_crs("EPSG:4326", crs, always_xy=True)``.
The single-operation fast path must change no number, on any point, with any thread count.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyproj import Transformer

from trails import projection
from trails.projection import project_lonlat
from trails.projection_op import SingleOperation, single_operation


def contract(lon: np.ndarray, lat: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """The contract's projection, written out plainly (the reference)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return tr.transform(np.array(lon, np.float64), np.array(lat, np.float64))


def _points(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded points over Great Britain, its surroundings and the operation's box edges."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-10.0, 3.0, n)
    lat = rng.uniform(48.0, 62.0, n)
    op = single_operation("EPSG:27700")
    edges_lon = np.array([op.west, op.east, op.west - 1e-7, op.east + 1e-7, -8.82, 1.92, -1.0, -1.0, -1.0, -1.0])
    edges_lat = np.array([op.south, op.north, 52.0, 52.0, 52.0, 52.0, 49.79, 60.94, op.south - 1e-7, op.north + 1e-7])
    return np.concatenate([lon, edges_lon]), np.concatenate([lat, edges_lat])


def test_single_operation_is_proj_best_for_bng():
    op = single_operation("EPSG:27700")
    assert op is not None
    assert "OSGB36 to WGS 84 (6)" in op.description
    assert (op.west, op.south, op.east, op.north) == pytest.approx((-8.82, 49.79, 1.92, 60.94), abs=1e-5)


@pytest.mark.parametrize("threads", [1, 2], ids=["one-thread", "two-threads"])
@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 250_000], ids=["empty", "one", "below-fast", "fast", "big"])
def test_equal_to_contract_bit_for_bit(n, threads):
    lon, lat = _points(n + 7, n)
    if n < 10:
        lon, lat = lon[:n], lat[:n]
    x, y = project_lonlat(lon, lat, "EPSG:27700", threads=threads)
    rx, ry = contract(lon, lat, "EPSG:27700")
    assert np.array_equal(x, rx) and np.array_equal(y, ry)


def test_inplace_equal_and_inputs_untouched_otherwise():
    lon, lat = _points(3, 20_000)
    keep = lon.copy(), lat.copy()
    x, y = project_lonlat(lon, lat, "EPSG:27700")
    assert np.array_equal(lon, keep[0]) and np.array_equal(lat, keep[1])
    xi, yi = project_lonlat(lon, lat, "EPSG:27700", inplace=True)
    assert xi is lon and yi is lat
    assert np.array_equal(xi, x) and np.array_equal(yi, y)


def test_all_outside_the_box_uses_the_contract():
    rng = np.random.default_rng(11)
    lon, lat = rng.uniform(-9.0, -8.83, 10_000), rng.uniform(49.0, 49.7, 10_000)
    x, y = project_lonlat(lon, lat, "EPSG:27700")
    rx, ry = contract(lon, lat, "EPSG:27700")
    assert np.array_equal(x, rx) and np.array_equal(y, ry)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:32630", "EPSG:2157"])
def test_other_crs_equal(crs):
    rng = np.random.default_rng(5)
    lon, lat = rng.uniform(-10.0, 2.0, 50_000), rng.uniform(50.0, 56.0, 50_000)
    x, y = project_lonlat(lon, lat, crs, threads=2)
    rx, ry = contract(lon, lat, crs)
    assert np.array_equal(x, rx) and np.array_equal(y, ry)


def test_a_wrong_operation_is_caught_by_the_spot_check(monkeypatch):
    """Should a chosen operation ever differ, the call's own spot check sends every point
    through the contract's transformer: the numbers never change."""
    good = single_operation("EPSG:27700")
    wrong = SingleOperation(Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True),
                            good.west, good.south, good.east, good.north, "wrong on purpose")
    import trails.projection_op as op_mod

    monkeypatch.setattr(op_mod, "single_operation", lambda crs: wrong)
    lon, lat = _points(9, 30_000)
    x, y = projection.project_lonlat(lon, lat, "EPSG:27700")
    rx, ry = contract(lon, lat, "EPSG:27700")
    assert np.array_equal(x, rx) and np.array_equal(y, ry)


def test_probe_grid_refuses_a_disagreeing_operation():
    good = single_operation("EPSG:27700")
    wrong = SingleOperation(Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True),
                            good.west, good.south, good.east, good.north, "wrong on purpose")
    tr = projection.transformer_for("EPSG:27700")
    lon, lat = np.array([-1.0, 0.5]), np.array([52.0, 51.0])
    assert good.agrees(tr, lon, lat)
    assert not wrong.agrees(tr, lon, lat)


def test_concurrent_threads_share_nothing_unsafe():
    """Many threads projecting at once (pyproj rebuilds a pipeline transformer per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    lon, lat = _points(21, 40_000)
    rx, ry = contract(lon, lat, "EPSG:27700")
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: project_lonlat(lon, lat, "EPSG:27700"), range(16)))
    assert all(np.array_equal(x, rx) and np.array_equal(y, ry) for x, y in outs)
