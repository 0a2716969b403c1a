"""The audit's search for inequalities that every solution meets with equality, checked row by
row against scipy: a row is reported tight exactly when no solution gives it any slack."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse
from scipy.optimize import linprog

from anonymization.audit import INF, _implicit_equalities


@st.composite
def systems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``low <= A x <= high, x >= 0`` around a non-negative integer solution, some rows
    equations, the other rows' upper bounds at the solution's level or a little above."""
    rows = draw(st.integers(1, 8))
    cols = draw(st.integers(1, 6))
    matrix = draw(hnp.arrays(np.int64, (rows, cols), elements=st.integers(-1, 1)))
    solution = draw(hnp.arrays(np.int64, cols, elements=st.integers(0, 5)))
    room = draw(hnp.arrays(np.int64, rows, elements=st.sampled_from([0, 0, 0, 1, 3])))
    equation = draw(hnp.arrays(bool, rows))
    level = (matrix @ solution).astype(float)
    high = level + np.where(equation, 0, room)
    low = np.where(equation, level, -INF)
    return matrix.astype(float), low, high


@settings(max_examples=150, deadline=None)
@given(systems())
# 0 <= x <= 1: both rows are loose, but a vertex optimum gives one of them no slack, so the
# search must look again at the rows its first LP left at zero.
@example((np.array([[1.0], [-1.0]]), np.array([-INF, -INF]), np.array([1.0, 0.0])))
def test_a_row_is_tight_exactly_when_no_solution_gives_it_slack(
    system: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    matrix, low, high = system
    tight = _implicit_equalities(sparse.csr_matrix(matrix), low, high, 0.0)
    equation = np.isfinite(low)
    assert not tight[equation].any()
    for row in np.flatnonzero(~equation):
        # Most slack row ``row`` can have: maximise high - a x, i.e. minimise a x.
        result = linprog(
            matrix[row],
            A_ub=np.vstack([matrix, -matrix[equation]]),
            b_ub=np.concatenate([high, -low[equation]]),
            bounds=[(0, None)] * matrix.shape[1],
            method="highs",
        )
        if result.status == 3:  # unbounded: the row can be as loose as wished
            assert not tight[row]
            continue
        assert result.status == 0
        slack = high[row] - result.fun
        assert tight[row] == (slack < 1e-7), (row, slack)
