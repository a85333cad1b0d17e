"""The client-side rate: pacing, and the AIMD controller that finds Protime's limit.

Every test drives :class:`AdaptiveRate` with a hand-moved clock: no sleeping, no timing.
"""

from __future__ import annotations

import asyncio

import pytest

from sync.protime._rate import FIRST_RATE, AdaptiveRate, RateLimiter, RateTuning


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _rate(clock: Clock, **kwargs: object) -> AdaptiveRate:
    options: dict[str, object] = {
        "start": FIRST_RATE,
        "maximum": 200.0,
        "adaptive": True,
        "learned": False,
        "clock": clock,
    }
    options.update(kwargs)
    return AdaptiveRate(**options)  # type: ignore[arg-type]


def _busy(rate: AdaptiveRate, clock: Clock, seconds: float, *, latency: float = 0.02) -> None:
    """Send as fast as the pacer allows for ``seconds``, every answer a success."""
    end = clock.now + seconds
    while clock.now < end:
        wait = rate.reserve()
        clock.advance(wait)
        rate.observe(status=200, latency=latency, retry_after=None)


def test_paces_at_the_rate_with_the_given_burst():
    """Requests are spaced 1/rate apart; after a quiet spell `burst` of them go at once."""
    clock = Clock()
    rate = _rate(clock, start=10.0, adaptive=False, burst=3.0)
    waits = [rate.reserve() for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_a_fixed_rate_never_moves():
    """A number in the settings fixes the rate: 429s and slow answers change nothing."""
    clock = Clock()
    rate = _rate(clock, start=25.0, adaptive=False, maximum=25.0)
    _busy(rate, clock, 5.0)
    rate.observe(status=429, latency=0.02, retry_after=None)
    for _ in range(5):
        clock.advance(1.0)
        rate.observe(status=200, latency=5.0, retry_after=None)
    assert rate.rate == 25.0
    assert rate.cuts == 0


def test_first_run_starts_at_ten_and_probes_fast():
    """Nothing learned: 10/s, doubling each second while the rate holds the calls back."""
    clock = Clock()
    rate = _rate(clock)
    assert rate.rate == FIRST_RATE
    _busy(rate, clock, 3.0)
    assert 60.0 <= rate.rate <= 90.0  # 10 * 2**3 = 80, give or take the last slot


def test_never_above_the_maximum():
    """However long calls succeed, the rate stops at maximum."""
    clock = Clock()
    rate = _rate(clock, maximum=40.0)
    _busy(rate, clock, 10.0)
    assert rate.rate == 40.0


def test_no_raise_while_the_rate_is_not_what_holds_calls_back():
    """Calls that never wait for a slot (demand below the rate) do not raise it."""
    clock = Clock()
    rate = _rate(clock, start=50.0, learned=True)
    for _ in range(100):
        clock.advance(0.1)  # 10 calls/s against a rate of 50/s
        assert rate.reserve() == 0.0
        rate.observe(status=200, latency=0.02, retry_after=None)
    assert rate.rate == 50.0


def test_429_cuts_to_ninety_percent_of_what_protime_accepted():
    """A 429 cuts to 0.9 times the lower of the rate and the answers accepted in the last second."""
    clock = Clock()
    rate = _rate(clock, start=60.0, learned=True)
    # 40 answers in the last second while the rate says 60: Protime took 40.
    for _ in range(40):
        clock.advance(0.025)
        rate.reserve()
        rate.observe(status=200, latency=0.02, retry_after=None)
    clock.advance(1.0)  # the window before the 429 must be clean of the start
    for _ in range(40):
        clock.advance(0.025)
        rate.observe(status=200, latency=0.02, retry_after=None)
    rate.observe(status=429, latency=0.02, retry_after=None)
    assert rate.rate == pytest.approx(0.9 * 40)
    assert rate.cuts == 1


def test_a_429_after_a_quiet_spell_measures_only_the_busy_part():
    """A window that began quiet (HR read, planning) is measured over its busy part only."""
    clock = Clock()
    rate = _rate(clock, start=60.0, learned=True)
    _busy(rate, clock, 2.0)
    clock.advance(1.5)  # nothing asked for 1.5 s
    for _ in range(15):  # then 15 answers in 0.3 s: 50/s accepted
        clock.advance(0.02)
        rate.reserve()
        rate.observe(status=200, latency=0.02, retry_after=None)
    rate.observe(status=429, latency=0.02, retry_after=None)
    assert rate.rate == pytest.approx(0.9 * 50.0)


def test_too_short_a_busy_spell_cuts_from_the_rate():
    """A handful of answers after a quiet spell says nothing: the cut is 0.9 x the rate."""
    clock = Clock()
    rate = _rate(clock, start=60.0, learned=True)
    _busy(rate, clock, 2.0)
    clock.advance(1.5)
    for _ in range(3):
        clock.advance(0.02)
        rate.reserve()
        rate.observe(status=200, latency=0.02, retry_after=None)
    before = rate.rate
    rate.observe(status=429, latency=0.02, retry_after=None)
    assert rate.rate == pytest.approx(0.9 * before)


def test_requests_that_never_wait_do_not_raise_the_probe():
    """Sequential page reads slower than the rate never wait for a slot: no raise."""
    clock = Clock()
    rate = _rate(clock, start=40.0)
    _busy(rate, clock, 0.5)  # paced: raised a little
    raised = rate.rate
    for _ in range(100):  # then one read every 50 ms (20/s), below the rate
        clock.advance(0.05)
        assert rate.reserve() == 0.0
        rate.observe(status=200, latency=0.02, retry_after=None)
    assert rate.rate == pytest.approx(raised, rel=0.02)


def test_one_cut_per_episode_and_retry_after_pauses_everyone():
    """The 429s of calls already in flight do not cut again; no request starts before Retry-After."""
    clock = Clock()
    rate = _rate(clock, start=50.0, learned=True)
    rate.observe(status=429, latency=0.02, retry_after=2.0)
    first = rate.rate
    rate.observe(status=429, latency=0.02, retry_after=2.0)
    clock.advance(0.5)
    rate.observe(status=429, latency=0.02, retry_after=1.0)
    assert rate.rate == first == pytest.approx(45.0)
    assert rate.cuts == 1
    assert rate.pause_left() == pytest.approx(1.5)
    assert rate.reserve() >= 1.5
    # After the pause and its settling window, a new 429 is a new episode.
    clock.advance(3.0)
    rate.observe(status=429, latency=0.02, retry_after=None)
    assert rate.cuts == 2


def test_after_a_cut_the_rate_recovers_additively():
    """After a cut the rate climbs back linearly in time (the same step each second)."""
    clock = Clock()
    rate = _rate(clock, start=100.0, learned=True)
    rate.observe(status=429, latency=0.02, retry_after=None)
    assert rate.rate == pytest.approx(90.0)
    clock.advance(1.0)  # the episode: no raise while the cut settles
    _busy(rate, clock, 1.0)
    one = rate.rate
    _busy(rate, clock, 1.0)
    two = rate.rate
    _busy(rate, clock, 1.0)
    three = rate.rate
    step = RateTuning().recover * 100.0
    assert two - one == pytest.approx(step, rel=0.05)
    assert three - two == pytest.approx(step, rel=0.05)


def test_near_the_limit_it_creeps_then_accelerates():
    """Near the learned limit the raise is slow, and grows the longer no 429 comes."""
    clock = Clock()
    rate = _rate(clock, start=100.0, learned=True)
    _busy(rate, clock, 1.0)
    early = rate.rate - 100.0
    _busy(rate, clock, 40.0)
    before = rate.rate
    _busy(rate, clock, 1.0)
    late = rate.rate - before
    assert 0 < early < 0.1  # 0.05/s at first
    assert late > 2 * early


def test_sustained_latency_rise_cuts_once():
    """Enough slow windows in a row cut the rate; only a rise above that level cuts again."""
    clock = Clock()
    windows = RateTuning().latency_windows
    rate = _rate(clock, start=100.0, learned=True)
    _busy(rate, clock, 3.0, latency=0.02)
    before = rate.rate
    _busy(rate, clock, windows - 0.5, latency=0.2)  # one window short of sustained
    assert rate.cuts == 0
    _busy(rate, clock, 1.6, latency=0.2)
    assert rate.cuts == 1
    assert rate.rate < before
    _busy(rate, clock, 3 * windows, latency=0.2)  # as slow as before: no further cut
    _busy(rate, clock, 2.0, latency=0.02)  # fast again...
    _busy(rate, clock, 3 * windows, latency=0.2)  # ...then back to the same slow level
    assert rate.cuts == 1
    _busy(rate, clock, windows + 1.5, latency=1.0)  # a further rise
    assert rate.cuts == 2


def test_small_latency_noise_does_not_cut():
    """Twice as slow but only a few milliseconds more is noise, not Protime slowing down."""
    clock = Clock()
    rate = _rate(clock, start=100.0, learned=True)
    _busy(rate, clock, 2.0, latency=0.001)
    _busy(rate, clock, 10.0, latency=0.004)
    assert rate.cuts == 0


def test_many_cuts_stop_at_the_floor():
    """Endless 429s cut the rate down to its floor (half the starting rate), never to zero."""
    clock = Clock()
    rate = _rate(clock, start=50.0, learned=True)
    for _ in range(100):
        rate.observe(status=429, latency=0.02, retry_after=None)
        clock.advance(5.0)
    assert rate.rate == 25.0


def test_many_cuts_of_a_slow_start_stop_at_the_minimum():
    """A floor under the minimum is the minimum: never zero."""
    clock = Clock()
    rate = _rate(clock, start=1.5, learned=True)
    for _ in range(100):
        rate.observe(status=429, latency=0.02, retry_after=None)
        clock.advance(5.0)
    assert rate.rate == RateTuning().minimum


def test_a_learned_rate_above_the_maximum_starts_at_the_maximum():
    """A rate learned under a higher ceiling is clamped to today's maximum."""
    rate = _rate(Clock(), start=500.0, learned=True, maximum=200.0)
    assert rate.rate == 200.0


def test_a_request_asleep_during_a_pause_books_a_new_slot_after_it():
    """A 429 that arrives while a request waits for its slot keeps that request until the pause ends."""
    clock = Clock()
    rate = _rate(clock, start=10.0, adaptive=False, burst=1.0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        if len(slept) == 1:
            rate.observe(status=429, latency=0.02, retry_after=3.0)

    limiter = RateLimiter(rate, sleep=sleep)

    async def scenario() -> None:
        await limiter.acquire()  # the first slot: now
        start = clock.now
        await limiter.acquire()  # the second slot, during which the 429 comes
        assert clock.now - start >= 3.0

    asyncio.run(scenario())
    assert len(slept) == 2


def test_a_retry_after_past_the_longest_pause_pauses_no_one():
    """A Retry-After longer than IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS ends the run instead:
    the calls still in flight are not put to sleep for it, while a shorter one pauses them."""
    clock = Clock()
    rate = _rate(clock, start=50.0, learned=True, max_pause=300.0)
    rate.observe(status=429, latency=0.02, retry_after=86_400.0)
    assert rate.pause_left() == 0.0
    assert rate.reserve() < 1.0
    rate.observe(status=429, latency=0.02, retry_after=300.0)
    assert rate.pause_left() == pytest.approx(300.0)
