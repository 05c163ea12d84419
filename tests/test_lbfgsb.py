"""The direct L-BFGS-B driver against scipy.optimize.minimize, which runs the same solver."""

import numpy as np
import scipy.optimize

from optimize.lbfgsb import minimize_box


def rosenbrock_box(z):
    """A non-convex problem whose unconstrained minimum (all ones) lies outside [0, 0.8]."""
    f = float(np.sum(100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2))
    g = np.zeros_like(z)
    g[:-1] = -400 * z[:-1] * (z[1:] - z[:-1] ** 2) - 2 * (1 - z[:-1])
    g[1:] += 200 * (z[1:] - z[:-1] ** 2)
    return f, g


def test_same_iterates_as_scipy_minimize():
    x0 = np.random.default_rng(0).uniform(0, 0.8, 50)
    seen = []
    done = minimize_box(
        rosenbrock_box, x0, 0.0, 0.8, iterations=25, history=5,
        on_iterate=lambda x, f: seen.append((x.copy(), f)),
    )  # fmt: skip
    expected = []
    scipy.optimize.minimize(
        rosenbrock_box, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, 0.8)] * 50,
        callback=lambda intermediate_result: expected.append(
            (intermediate_result.x.copy(), intermediate_result.fun)
        ),
        options=dict(maxiter=25, maxcor=5, ftol=0.0, gtol=0.0, maxls=20),
    )  # fmt: skip
    assert done == 25 == len(seen) == len(expected)
    for (x, f), (x_ref, f_ref) in zip(seen, expected, strict=True):
        np.testing.assert_array_equal(x, x_ref)
        assert f == f_ref
    final = seen[-1][0]
    assert final.min() >= 0.0 and final.max() <= 0.8
    assert seen[-1][1] < 0.1 * rosenbrock_box(x0)[0]


def test_a_known_first_evaluation_is_not_repeated():
    x0 = np.full(10, 0.3)
    calls = []

    def fun(z):
        calls.append(z.copy())
        return rosenbrock_box(z)

    minimize_box(fun, x0, 0.0, 1.0, iterations=3, first=rosenbrock_box(x0))
    assert len(calls) >= 3 and not any(np.array_equal(c, x0) for c in calls)


def test_zero_iterations_run_none():
    seen = []
    x0 = np.full(10, 0.5)
    assert (
        minimize_box(rosenbrock_box, x0, 0.0, 1.0, 0, on_iterate=lambda x, f: seen.append(f)) == 0
    )
    assert seen == []
    assert (
        minimize_box(rosenbrock_box, x0, 0.0, 1.0, 1, on_iterate=lambda x, f: seen.append(f)) == 1
    )
