"""The optimiser's bookkeeping (`simulate.sphere.Book`) and its masks: counts, timings, progress reports and the
rounding slack of the line search. The optimiser converges with most of these wrong; these tests do not pass."""

import math
import time

import torch

from simulate import sphere

F64 = torch.float64


def _book(n_configs=3, progress=None):
    z = torch.zeros(n_configs, 2, dtype=F64)
    return sphere.Book(None, z, grad_tol=1e-9, step_tol=1e-12, max_iter=10, progress=progress)


def test_a_fresh_book_has_counted_nothing_and_settled_nothing():
    book = _book()
    assert book.counts.dtype == book.newton_counts.dtype == book.route.dtype == torch.long
    assert book.counts.tolist() == book.newton_counts.tolist() == [0, 0, 0]
    assert book.settled.dtype == torch.bool and not book.settled.any()
    assert book.route.tolist() == [sphere.ROUTES.index("iteration cap")] * 3
    assert book.seconds.dtype == F64 and book.seconds.isnan().all() and book.iteration == 0


def test_mask_at_marks_exactly_the_indices():
    mask = sphere.mask_at(torch.zeros(5, dtype=F64), torch.tensor([1, 3]))
    assert mask.dtype == torch.bool and mask.tolist() == [False, True, False, True, False]
    assert sphere.mask_at(torch.zeros(3), torch.tensor([], dtype=torch.long)).tolist() == [False] * 3


def test_the_rounding_slack_is_8_ulps_of_max_1_and_the_loss():
    eps = torch.finfo(F64).eps
    slack = _book().slack(torch.tensor([0.5, -4.0, 2.0], dtype=F64))
    assert slack.tolist() == [8 * eps, 32 * eps, 16 * eps]


def test_steps_are_counted_per_running_configuration_and_the_last_move_is_remembered():
    book = _book()
    book.record_step(
        torch.tensor([True, True, False]), torch.tensor([True, False, False]), torch.tensor([0.5, 0.25, 0.125])
    )
    book.record_step(
        torch.tensor([True, False, False]), torch.tensor([False, False, False]), torch.tensor([1.0, 1.0, 1.0])
    )
    assert book.counts.tolist() == [2, 1, 0]
    assert book.last_decrease.tolist() == [0.5, 0.0, 0.0]


def test_a_configuration_is_timed_from_the_start_when_it_first_stops():
    book = _book()
    book.stop(torch.tensor([True, False, False]))
    first = book.seconds.clone()
    assert 0 <= first[0] < 60 and first[1:].isnan().all()
    time.sleep(0.02)
    book.stop(torch.tensor([True, True, False]))
    assert book.seconds[0] == first[0]  # a second stop does not move the first time
    assert book.seconds[1] - first[0] >= 0.01 and math.isnan(book.seconds[2])


def test_each_tick_reports_the_iteration_and_how_many_have_settled():
    reports = []
    book = _book(progress=lambda iteration, settled: reports.append((iteration, settled)))
    book.tick()
    book.settled[1] = True
    book.tick()
    assert reports == [(1, 0), (2, 1)] and book.iteration == 2
    quiet = _book()
    quiet.tick()
    assert quiet.iteration == 1
