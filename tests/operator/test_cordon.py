"""Drain before remove (docpipe_operator.cordon): a shrinking pool deletes only pods
that hold no work, and takes warm pods back before it starts cold ones."""

from __future__ import annotations

from docpipe_operator.cordon import PodDrain, plan_scale, serving

NOW = 1000.0
GIVE_UP = 900.0


def pod(name: str, in_flight: float | None = 0, **kw: object) -> PodDrain:
    return PodDrain(name=name, ready=kw.pop("ready", True), in_flight=in_flight, **kw)  # type: ignore[arg-type]


def cordoned(name: str, in_flight: float | None, draining: bool | None, at: float = NOW - 60):
    return PodDrain(name, True, True, at, in_flight, draining)


def plan(replicas: int, want: int, pods: list[PodDrain]):
    return plan_scale(replicas, want, pods, now=NOW, give_up_s=GIVE_UP)


def test_idle_pods_go_at_once_and_busy_ones_are_cordoned() -> None:
    """3 -> 1 with one busy pod (issue 12, item 7): the idle pod goes, the busiest stays."""
    result = plan(3, 1, [pod("a", 2), pod("b", 0), pod("c", 1)])
    assert result.remove == ("b",)
    assert result.cordon == ("c",)  # the less busy of the two that work
    assert result.replicas == 2 and result.serving == 1


def test_a_cordoned_pod_goes_once_it_reports_drained_and_idle() -> None:
    pods = [pod("a", 3), cordoned("c", in_flight=0, draining=True)]
    result = plan(2, 1, pods)
    assert result.remove == ("c",) and result.replicas == 1 and result.serving == 1


def test_a_cordoned_pod_still_working_stays() -> None:
    for still in (cordoned("c", in_flight=1, draining=True), cordoned("c", 0, draining=False)):
        result = plan(2, 1, [pod("a", 3), still])
        assert result.remove == () and result.replicas == 2 and result.serving == 1


def test_a_pod_that_never_reports_drained_goes_after_the_give_up_time() -> None:
    """An old worker image (or unreadable metrics): the SIGTERM path takes over."""
    stale = cordoned("c", in_flight=None, draining=None, at=NOW - GIVE_UP)
    assert plan(2, 1, [pod("a", 3), stale]).remove == ("c",)
    fresh = cordoned("c", in_flight=None, draining=None, at=NOW - GIVE_UP + 1)
    assert plan(2, 1, [pod("a", 3), fresh]).remove == ()


def test_demand_coming_back_takes_cordoned_pods_back_before_starting_new_ones() -> None:
    pods = [pod("a", 4), cordoned("b", 2, False), cordoned("c", 0, True)]
    result = plan(3, 2, pods)
    assert result.uncordon == ("b",)  # the busier one: it has not stopped working
    assert result.remove == ("c",)  # the other is drained and not needed
    assert result.replicas == 2 and result.serving == 2
    grown = plan(3, 5, pods)
    assert set(grown.uncordon) == {"b", "c"} and grown.replicas == 5 and grown.serving == 5


def test_pods_without_work_by_construction_go_first() -> None:
    """Replicas not created yet and pods not ready hold no work: no cordon needed."""
    result = plan(4, 2, [pod("a", 1), pod("b", 1), pod("s", None, ready=False)])
    assert result.replicas == 2 and result.cordon == () and result.remove == ()


def test_a_pod_whose_load_cannot_be_read_goes_after_the_idle_ones_and_before_busy_ones() -> None:
    """As before drain-before-remove: its worker's graceful shutdown covers it."""
    result = plan(4, 1, [pod("a", None), pod("b", 5), pod("c", 0), pod("d", 2)])
    assert result.remove == ("c", "a") and result.cordon == ("d",)


def test_serving_counts_wanted_replicas_less_the_cordoned_pods() -> None:
    assert serving(3, [pod("a"), cordoned("b", 1, True)]) == 2
    assert serving(1, [cordoned("a", 1, True), cordoned("b", 1, True)]) == 0


def test_a_steady_pool_is_left_alone() -> None:
    result = plan(2, 2, [pod("a", 1), pod("b", 0)])
    assert (result.replicas, result.cordon, result.uncordon, result.remove) == (2, (), (), ())
