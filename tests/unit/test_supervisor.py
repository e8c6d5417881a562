"""The supervisor's restart policy and the lines it reports, without processes.

The policy is what a human sees when a worker dies during ``docpipe run``:
a quick restart after one crash, longer waits while it keeps crashing right
after it starts, a fresh start once it has stayed up, and an honest "giving
up" with the log instead of restarting a broken worker forever.
"""

from __future__ import annotations

import signal

import pytest

from docpipe.local.supervisor import (
    RestartDecision,
    RestartPolicy,
    back_line,
    describe_exit,
    exit_line,
    give_up_line,
    next_restart,
)

POLICY = RestartPolicy(first_delay_s=1, max_delay_s=30, stable_after_s=60, give_up_after=8)


def crash_repeatedly(times: int, uptime_s: float, policy: RestartPolicy) -> list[RestartDecision]:
    """The decisions for a worker that crashes ``times`` times, each after ``uptime_s`` up."""
    decisions, streak = [], 0
    for _ in range(times):
        decision = next_restart(streak, uptime_s, policy)
        decisions.append(decision)
        streak = decision.crashes_in_a_row
    return decisions


def test_the_first_crash_is_restarted_after_the_first_delay() -> None:
    assert next_restart(0, uptime_s=12.0, policy=POLICY) == RestartDecision(True, 1.0, 1)


def test_crashes_soon_after_starting_double_the_delay_up_to_the_cap() -> None:
    delays = [d.delay_s for d in crash_repeatedly(7, uptime_s=3.0, policy=POLICY)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]


def test_a_worker_that_stayed_up_starts_a_new_streak() -> None:
    after_many = next_restart(6, uptime_s=60.0, policy=POLICY)
    assert after_many == RestartDecision(True, 1.0, 1)
    assert next_restart(6, uptime_s=59.9, policy=POLICY).crashes_in_a_row == 7


def test_it_gives_up_on_the_nth_rapid_crash_in_a_row() -> None:
    policy = RestartPolicy(give_up_after=3)
    decisions = crash_repeatedly(3, uptime_s=0.5, policy=policy)
    assert [d.restart for d in decisions] == [True, True, False]
    assert decisions[-1].crashes_in_a_row == 3


def test_crashes_after_long_uptimes_are_restarted_forever() -> None:
    decisions = crash_repeatedly(50, uptime_s=600.0, policy=RestartPolicy(give_up_after=2))
    assert all(d.restart and d.delay_s == 1.0 for d in decisions)


def test_the_default_policy_backs_off_from_one_second_to_thirty() -> None:
    policy = RestartPolicy()
    assert next_restart(0, 1.0, policy).delay_s == 1.0
    assert next_restart(policy.give_up_after - 2, 1.0, policy).restart
    assert not next_restart(policy.give_up_after - 1, 1.0, policy).restart
    assert RestartPolicy().max_delay_s == 30.0


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (2, "exit code 2"),
        (0, "exit code 0"),
    ],
)
def test_an_exit_is_described_by_its_signal_or_code(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said


def test_the_event_lines_say_what_happened_and_what_comes_next() -> None:
    assert (
        exit_line("gpu", -signal.SIGKILL, uptime_s=41.3, delay_s=1.0, restart=1)
        == "gpu worker exited (killed by SIGKILL) after 41 s up; restarting in 1 s (restart 1)"
    )
    assert (
        exit_line("cpu-2", 1, uptime_s=2.04, delay_s=4.0, restart=3)
        == "cpu-2 worker exited (exit code 1) after 2.0 s up; restarting in 4 s (restart 3)"
    )
    assert back_line("gpu", 6.23) == "gpu worker is back, polling after 6.2 s"


def test_giving_up_says_why_and_shows_the_log_tail() -> None:
    line = give_up_line(
        "io",
        2,
        crashes=5,
        policy=RestartPolicy(stable_after_s=60),
        log_tail="docpipe io worker: invalid configuration:\n  S3_BUCKET: required",
    )
    assert line.startswith(
        "io worker exited (exit code 2) 5 times in a row, each within 60 s of starting; "
        "not restarting it again."
    )
    assert line.endswith(
        "\n    docpipe io worker: invalid configuration:\n      S3_BUCKET: required"
    )
