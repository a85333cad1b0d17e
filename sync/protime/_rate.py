"""The client-side request rate: a pacer, and the controller that finds Protime's limit (AIMD).

Protime rate-limits each API client but publishes no number. With ``auto`` the client starts at the
rate the last run learned and adjusts it from what Protime answers, as TCP does with its window
(docs/protime-client.md gives the rules with their numbers):

* while calls succeed and the rate is what holds them back, it is raised: doubling per second
  until the first cut of a run that starts without a learned rate (to find the order of magnitude
  in seconds, not minutes), then additively: quickly back to just under the estimate of the limit,
  slowly past it, a little faster the longer no 429 comes;
* a 429 cuts it to 0.9 times the lower of the current rate and the rate Protime actually accepted
  in the last second (the estimate of the limit), and no new request starts before its
  ``Retry-After``. Further 429s of the calls already in flight do not cut again. A cut never
  goes below half the starting rate or the most Protime accepted in one second of the run: a
  429 at that floor does not follow the rate (faults every Nth request), so it neither cuts nor
  pauses the other calls, and the share of 429s among the last 50 answers there is the
  background; above the floor a 429 then cuts only when that share exceeds the background, so
  the rate recovers;
* a sustained rise in latency (five 1-second windows in a row whose mean is at least twice the
  fastest window's and 100 ms above it) cuts it the same way: Protime is slowing down before it
  refuses. Only a rise to twice that level cuts again, so a tenant that is simply slower today (or
  a busy machine) is cut once, not to nothing.

The rate never leaves ``[minimum, maximum]``. A fixed rate (a number in the settings) uses the same
pacer and never changes. Everything takes its time from an injected clock, so the tests are
deterministic; the only I/O, sleeping, is in :class:`RateLimiter`.

Written by hand rather than with aiolimiter (which idsync used for the fixed rate): aiolimiter's
rate is fixed at construction, and the controller is the part specific to us.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sync.config import ProtimeSettings

FIRST_RATE = 10.0  # requests/s of a first run with nothing learned yet


class RateMemory(Protocol):
    """Where an ``auto`` rate is kept from one run to the next (the port of the learned rate).

    A client made with one recalls the rate when it opens (``async with``) and remembers the
    rate it ended at when it closes; with a fixed rate, or none, neither is asked.
    """

    def recall(self) -> float | None:
        """The rate the last run ended at, requests/s; None when nothing was learned yet."""
        ...

    def remember(self, rate: float | None) -> None:
        """Keep ``rate`` (the rate this run ended at) for the next run."""
        ...


_TOO_MANY = 429


@dataclass(frozen=True, slots=True)
class RateTuning:
    """The constants of the controller (tests and the benchmark may change them)."""

    minimum: float = 1.0  # requests/s; never cut below
    probe_growth: float = 2.0  # factor per second before the first cut of an unlearned run
    cut: float = 0.9  # multiplicative decrease
    near: float = 0.98  # "near the limit": this share of the estimate
    recover: float = 0.02  # below near: raise by this share of the estimate per second
    recover_unsure: float = 0.1  # the same after the probe's cut, whose estimate is a lower bound
    creep: float = 0.0005  # from near on: raise by this share of the estimate per second...
    accelerate: float = 20.0  # ...growing by its own size every this many seconds without a cut
    window: float = 1.0  # seconds of one measuring window
    latency_windows: int = 5  # windows in a row above the threshold that make a sustained rise
    latency_factor: float = 2.0  # a window is slow at this multiple of the reference latency...
    latency_floor: float = 0.1  # ...and at least this many seconds above it
    latency_min_samples: int = 3  # a window with fewer answers says nothing about latency
    # A cut never takes the rate below this share of the highest of the starting rate and the
    # most Protime accepted in one window of this run. At that floor a 429 does not follow the
    # rate (faults that come every Nth request whatever the pace): it neither cuts nor pauses
    # the other calls, and the share of 429s among the last `share_answers` answers becomes the
    # background; above the floor a 429 then cuts only when that share exceeds the background
    # by half of itself plus `background_margin`.
    floor_share: float = 0.5
    background_margin: float = 0.05
    share_answers: int = 50


class AdaptiveRate:
    """Pacing (GCRA) at :attr:`rate`, and the AIMD decisions that move it.

    ``reserve()`` books the next slot for one request and returns how long to wait for it;
    ``observe()`` is told how each request ended. ``adaptive=False`` keeps the rate fixed.
    ``burst``: requests that may go at once after a quiet spell (at most ``concurrency``).
    """

    def __init__(
        self,
        *,
        start: float,
        maximum: float,
        adaptive: bool,
        clock: Callable[[], float],
        learned: bool = True,
        burst: float = 1.0,
        tuning: RateTuning | None = None,
        max_pause: float = math.inf,
    ) -> None:
        self.tuning = t = tuning or RateTuning()
        self.adaptive = adaptive
        self.maximum = maximum
        self.max_pause = max_pause  # the longest Retry-After pause taken (see observe)
        self._clock = clock
        low = min(t.minimum, maximum) if adaptive else 0.0
        self.rate = min(max(start, low), maximum) if adaptive else start
        self._burst = max(1.0, burst)
        now = clock()
        self._tat = now  # GCRA's theoretical arrival time of the next request
        self._paused_until = now
        # Probing (fast raise) until the first cut, unless we start from a learned rate.
        self._probing = adaptive and not learned
        # The limit as last measured (the rate Protime accepted when it first refused more);
        # None until a cut: a learned rate is its own estimate.
        self._estimate: float | None = self.rate if learned else None
        self._sure = learned
        self._last_grow = now
        self._near_since = now
        self._limited_at = -1e18  # when a request last had to wait for its slot
        self._cut_at = -1e18  # when the rate was last cut
        self._episode_until = -1e18  # 429s before this belong to the last cut
        # When each answer of the last window came (the rate Protime accepted), and the
        # latency of the current window's answers.
        self._accepted: deque[float] = deque()
        self._window_start = now
        self._window_latency = 0.0
        self._window_count = 0
        self._reference_latency: float | None = None
        self._latency_cut_level = 0.0  # the mean latency that caused the last latency cut
        self._slow_windows = 0
        self.cuts = 0
        # The highest of the starting rate and the most answers other than 429 Protime gave in
        # one window of this run (requests/s): what the floor is a share of.
        self._peak = self.rate if adaptive else 0.0
        self._window_accepted = 0
        # Whether each of the last answers was a 429, and how many of them were.
        self._recent: deque[bool] = deque(maxlen=t.share_answers)
        self._recent_refused = 0
        # The share of 429s that comes whatever the rate (measured at the floor); None: none yet.
        self.background: float | None = None
        self.unrelated_429s = 0  # 429s at the floor: neither cut nor paused the client

    # ----------------------------------------------------------------------------------- pacing

    def reserve(self) -> float:
        """Book the next request's slot; the seconds to wait before sending it (0: now)."""
        now = self._clock()
        tolerance = self._tolerance()
        tat = max(self._tat, now, self._paused_until)
        wait = max(0.0, tat - tolerance - now, self._paused_until - now)
        self._tat = tat + 1.0 / self.rate
        if wait > 0:
            self._limited_at = now + wait
        return wait

    def _tolerance(self) -> float:
        """How far ahead of its slot a request may go: the burst allowance, in seconds."""
        return (max(1.0, min(self._burst, self.rate)) - 1.0) / self.rate

    def pause_left(self) -> float:
        """Seconds until a ``Retry-After`` pause ends (0: none); a woken request checks it."""
        return max(0.0, self._paused_until - self._clock())

    # ---------------------------------------------------------------------------------- control

    def observe(self, *, status: int | None, latency: float, retry_after: float | None) -> None:
        """One request ended: ``status`` None when no answer came."""
        now = self._clock()
        if status == _TOO_MANY:
            if self.adaptive:
                self._remember(refused=True)
                if self._unrelated():
                    # These 429s do not follow the rate (cutting further would only starve the
                    # run until its tokens expire in the queue). The refused call waits its own
                    # Retry-After; the others keep their pace, and the rate recovers.
                    self.unrelated_429s += 1
                    return
            cut = self.adaptive and now >= self._episode_until
            if cut:
                self._cut(now, measure=True)
            # A pause longer than the longest Retry-After a run waits for is not taken: that
            # answer ends the run (ProtimeBackoffError), and the calls in flight must not sleep.
            if retry_after is not None and 0 < retry_after <= self.max_pause:
                self._paused_until = max(self._paused_until, now + retry_after)
                # No burst when the pause ends: the bucket on Protime's side holds little.
                self._tat = max(self._tat, self._paused_until + self._tolerance())
            if cut:
                # The calls sent before the cut answer within about a window after the pause;
                # their 429s belong to this cut.
                self._episode_until = max(now, self._paused_until) + self.tuning.window
                self._last_grow = self._episode_until
            return
        if not self.adaptive or status is None:
            return
        self._accepted.append(now)
        self._forget_before(now - self.tuning.window)
        self._close_windows(now)
        self._window_accepted += 1
        self._remember(refused=False)
        if status < 500:  # noqa: PLR2004 - a server error says nothing about its speed
            self._window_latency += latency
            self._window_count += 1
        self._grow(now)

    def _grow(self, now: float) -> None:
        t = self.tuning
        # At most one window at a time: no jump after a quiet spell.
        elapsed = min(now - self._last_grow, t.window)
        self._last_grow = now
        # Raise only while the rate is what holds the calls back (a request waited for its slot
        # within the last two slots: sequential page reads that never wait do not raise it),
        # and not while a pause or the last cut's in-flight calls are still settling.
        limited = now - self._limited_at <= 2.0 / self.rate
        if elapsed <= 0 or not limited or now < self._episode_until:
            return
        if self._probing:
            self.rate *= t.probe_growth**elapsed
        else:
            estimate = self._estimate or self.rate
            # After the probe's cut the estimate is only a lower bound (the rate was still
            # rising through the window that measured it): recover straight to the next 429.
            if not self._sure:
                self.rate += estimate * t.recover_unsure * elapsed
                self._near_since = now
            elif self.rate < estimate * t.near:
                self.rate += estimate * t.recover * elapsed
                self._near_since = now
            else:
                # Slowly at first (the last limit is likely still the limit), then faster the
                # longer Protime keeps accepting more (it may have raised the limit).
                since = now - self._near_since
                self.rate += estimate * t.creep * (1 + since / t.accelerate) * elapsed
        self.rate = min(self.rate, self.maximum)

    def _accepted_rate(self, now: float) -> float | None:
        """Answers other than 429 per second over the last window, if it was a clean one."""
        t = self.tuning
        self._forget_before(now - t.window)
        # A window cut short by a pause or by the last cut does not measure the limit; nor does
        # one that began quiet (the run was reading HR or planning): its few answers say how
        # much was asked, not how much Protime takes.
        if self._paused_until > now - t.window - 1e-9 or self._cut_at > now - t.window:
            return None
        accepted = self._accepted
        if not accepted:
            return None
        if accepted[0] > now - 0.75 * t.window:
            # Busy only since the first of these answers: their rate over that span, if it is
            # long enough to say anything.
            span = now - accepted[0]
            enough = span >= 0.2 * t.window and len(accepted) >= 5  # noqa: PLR2004
            return (len(accepted) - 1) / span if enough else None
        return len(accepted) / t.window

    def _forget_before(self, moment: float) -> None:
        accepted = self._accepted
        while accepted and accepted[0] < moment:
            accepted.popleft()

    def _remember(self, *, refused: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._recent_refused -= 1
        recent.append(refused)
        self._recent_refused += refused

    def _unrelated(self) -> bool:
        """Whether the 429 just counted does not follow the rate: it came at the floor (the share
        of 429s there is the background), or the share lately is no more than the background."""
        t = self.tuning
        answers = len(self._recent)
        share = self._recent_refused / answers if answers else 1.0
        if self.rate <= self.floor * (1 + 1e-9):
            if answers >= t.share_answers // 2:  # fewer answers say little about a share
                background = self.background
                self.background = share if background is None else (background + share) / 2
            # The cuts that led here measured faults, not the limit: recover as after the probe,
            # towards the most Protime has shown it takes, until a 429 that follows the rate.
            self._estimate = max(self._estimate or 0.0, self._peak)
            self._sure = False
            return True
        background = self.background
        return (
            background is not None
            and answers >= t.share_answers // 2
            and share <= background * 1.5 + t.background_margin
        )

    @property
    def floor(self) -> float:
        """The lowest rate a cut leads to: ``floor_share`` of the starting rate or of the most
        Protime accepted in one window of this run, whichever is higher; at least the minimum."""
        t = self.tuning
        return min(max(t.minimum, t.floor_share * self._peak), self.maximum)

    def _cut(self, now: float, *, measure: bool) -> None:
        t = self.tuning
        basis = self.rate
        measured = self._accepted_rate(now) if measure else None
        if measured is not None and measured > 0:
            basis = min(basis, measured)
        self._estimate = basis
        if measured is not None:
            self._peak = max(self._peak, measured)
        self.rate = max(self.floor, basis * t.cut)
        self._sure = not self._probing
        self._probing = False
        self._cut_at = now
        self._episode_until = max(now, self._paused_until) + t.window
        self._last_grow = self._episode_until
        self.cuts += 1

    def _close_windows(self, now: float) -> None:
        t = self.tuning
        if now - self._window_start < t.window:
            return
        elapsed = now - self._window_start
        if elapsed < 2 * t.window:  # a window, not a quiet spell
            self._peak = max(self._peak, self._window_accepted / elapsed)
        self._window_accepted = 0
        if self._window_count >= t.latency_min_samples:
            self._judge_latency(now, self._window_latency / self._window_count)
        self._window_start = now
        self._window_latency = 0.0
        self._window_count = 0

    def _judge_latency(self, now: float, mean: float) -> None:
        t = self.tuning
        reference = self._reference_latency
        if reference is None or mean < reference:
            self._reference_latency = mean
            self._slow_windows = 0
            return
        slow = (
            mean >= reference * t.latency_factor
            and mean - reference >= t.latency_floor
            and mean > self._latency_cut_level * t.latency_factor
        )
        self._slow_windows = self._slow_windows + 1 if slow else 0
        if self._slow_windows >= t.latency_windows:
            self._cut(now, measure=False)
            # Only a rise to twice the level that caused this cut cuts again: a tenant that is
            # simply slower today (or a busy machine) is cut once, not to nothing.
            self._latency_cut_level = mean
            self._slow_windows = 0


class RateLimiter:
    """The asyncio face of :class:`AdaptiveRate`: wait for a slot, report how the call ended."""

    def __init__(
        self,
        control: AdaptiveRate,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.control = control
        self._sleep = sleep

    async def acquire(self) -> None:
        wait = self.control.reserve()
        while wait > 0:
            await self._sleep(wait)
            # A 429 seen while this request slept pauses it too (Retry-After): it books a new
            # slot after the pause, so the requests that waited do not all go at once.
            wait = self.control.reserve() if self.control.pause_left() > 0 else 0.0

    @property
    def rate(self) -> float:
        return self.control.rate


def rate_limiter(settings: ProtimeSettings, *, learned_rate: float | None) -> RateLimiter | None:
    """The client-side limit the settings ask for: ``auto``, a fixed rate, or none (0)."""
    rate = settings.rate_limit_per_second
    if rate == "auto":
        # No bursts: Protime's bucket is small, and requests bunched by a busy event loop would
        # be refused although the average is below the limit, and then cut the rate for nothing.
        control = AdaptiveRate(
            start=learned_rate or FIRST_RATE,
            maximum=settings.max_rate_per_second,
            max_pause=settings.max_retry_after_seconds,
            adaptive=True,
            learned=learned_rate is not None,
            burst=1.0,
            clock=time.monotonic,
        )
    elif rate > 0:
        # Bursts of at most `concurrency`: a burst as large as the rate would fire a second's
        # worth of calls at once into Protime's own (unpublished, likely smaller) allowance.
        control = AdaptiveRate(
            start=rate,
            maximum=rate,
            max_pause=settings.max_retry_after_seconds,
            adaptive=False,
            burst=float(settings.concurrency),
            clock=time.monotonic,
        )
    else:
        return None
    return RateLimiter(control)
