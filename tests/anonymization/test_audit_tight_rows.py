"""The audit's search for inequalities that every solution meets with equality, checked row by
row against scipy: a row is reported tight exactly when no solution gives it any slack."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse
from scipy.optimize import linprog

from anonymization.audit import intervals
from anonymization.blocks import SUBJECTS
from anonymization.lp import INF, implicit_equalities
from anonymization.relations import Quantity, Relations


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
@example(
    (
        np.array([[1.0, 1.0, -1.0], [0.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]),
        np.array([-INF, -INF, -INF]),
        np.array([1.0, 1.0, 1.0]),
    )
)
# 0 <= x <= 1: both rows are loose, but a vertex optimum gives one of them no slack, so the
# search must look again at the rows its first LP left at zero.
@example((np.array([[1.0], [-1.0]]), np.array([-INF, -INF]), np.array([1.0, 0.0])))
def test_a_row_is_tight_exactly_when_no_solution_gives_it_slack(
    system: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    matrix, low, high = system
    tight = implicit_equalities(sparse.csr_matrix(matrix), low, high, 0.0)
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
            # scipy's HiGHS presolve can call an unbounded LP infeasible: solve it plainly.
            options={"presolve": False},
        )
        if result.status == 3:  # unbounded: the row can be as loose as wished
            assert not tight[row]
            continue
        assert result.status == 0
        slack = high[row] - result.fun
        assert tight[row] == (slack < 1e-7), (row, slack)


def test_a_tight_row_with_a_published_cell_merges_nothing() -> None:
    """``p <= c1 + c2`` (months: not additive) with c2 published at 5 is met with equality
    (``p = c1 + d``, d published at 5, says so): p and c1 differ by 5 in every solution, so they
    must stay two columns; with ``e = p + f`` (e = 20) the exact intervals follow."""
    # Cells: 0 p, 1 c1, 2 c2, 3 d, 4 e, 5 f; rows: parent +1, children -1.
    matrix = sparse.csr_matrix(
        np.array(
            [
                [1, -1, -1, 0, 0, 0],  # p <= c1 + c2 (not additive)
                [1, -1, 0, -1, 0, 0],  # p = c1 + d
                [-1, 0, 0, 0, 1, -1],  # e = p + f
            ],
            dtype=float,
        )
    )
    relations = Relations(matrix, np.array([0, 0, 4]), np.array([False, True, True]))
    subjects = Quantity(SUBJECTS, np.array([10.0, 5, 5, 5, 20, 10]), nonnegative=True)
    suppressed = np.array([True, True, False, False, False, True])
    bounds = intervals(relations, [subjects], suppressed, np.array([0, 1, 5]))[SUBJECTS]
    np.testing.assert_allclose(bounds, [[5, 20], [0, 15], [0, 15]], atol=1e-7)
