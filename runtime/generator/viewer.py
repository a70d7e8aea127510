"""One account's endless timeline: sessions of browsing and plays, separated by gaps.

A session runs on one device with one profile: browse, play, maybe give
feedback, and again, one to six times; a play that fails at startup is often
retried at once. A session ends after its planned plays or after an abandoned
play. The next one starts after a gap: sometimes 1-25 minutes (which a
30-minute session window merges with the previous one), usually more than 30
minutes. About a third of the accounts are mid-play at the origin, so the
stream starts close to its steady state.
"""

from __future__ import annotations

import math
from collections.abc import Generator

from runtime.generator.browse import browse, feedback
from runtime.generator.catalogue import Title
from runtime.generator.playback import HEARTBEAT_MS, playback
from runtime.generator.population import User
from runtime.generator.world import Tagged, World

_MINUTE_MS = 60_000
_P_ACTIVE_AT_ORIGIN = 0.35
_P_SHORT_GAP = 0.3
_P_RETRY = 0.6
_LOG_WATCH_MEDIAN = math.log(20 * _MINUTE_MS)
# Playback events of a play besides heartbeats: start, play, stop and the odd incident.
_EXTRA_PLAYBACK_EVENTS = 4.0


def _watch_ms(world: World) -> int:
    """How much content a viewer means to watch in one play."""
    rng = world.rng
    if rng.random() < 0.15:
        return 20_000 + int(rng.random() * 160_000)  # sampling a title
    return max(30_000, int(math.exp(rng.gauss(_LOG_WATCH_MEDIAN, 0.7))))


def _session_gap_ms(world: World) -> int:
    """Event time between two sessions of one account."""
    random = world.rng.random
    if random() < _P_SHORT_GAP:
        return 60_000 + int(random() * 24 * _MINUTE_MS)
    return 35 * _MINUTE_MS + int(world.rng.expovariate(1.0 / (90 * _MINUTE_MS)))


def _budget(world: World, watch_ms: int) -> int:
    """Interaction events before a play, sized so the long-run interaction ratio holds."""
    expected = watch_ms / HEARTBEAT_MS + _EXTRA_PLAYBACK_EVENTS
    scale = 0.5 + world.rng.random()
    return int(world.interactions_per_playback_event * expected * scale + 0.5)


def timeline(world: World, user: User) -> Generator[Tagged, None, None]:
    """Yield ``(stream, event)`` of one account forever, in strictly increasing event time.

    Args:
        world: shared run state.
        user: the account.

    Yields:
        ``("playback", event)`` or ``("interactions", event)`` pairs.
    """
    rng = world.rng
    random = rng.random
    resume: dict[str, int] = {}
    start_ms = world.config.start_ms
    mid_play = random() < _P_ACTIVE_AT_ORIGIN
    if mid_play:
        now = start_ms + int(random() * 20_000)
    else:
        now = start_ms + int(random() * 100 * _MINUTE_MS)
    while True:
        device = user.devices[int(random() * len(user.devices))]
        profile_id = user.profiles[int(random() * len(user.profiles))]
        plays = 1
        while plays < 6 and random() < 0.5:
            plays += 1
        retry: Title | None = None
        done = 0
        while done < plays:
            if retry is not None:
                title = retry
                watch = _watch_ms(world)
                retry = None
            else:
                title = world.pick_titles(user, 1)[0]
                watch = _watch_ms(world)
                if mid_play:
                    resume[title.title_id] = int(random() * title.duration_ms)
                else:
                    budget = _budget(world, min(watch, title.duration_ms))
                    if budget > 0:
                        now = yield from browse(world, user, profile_id, device, now, budget, title)
                    now += 300 + int(random() * 1_500)
            mid_play = False
            position = resume.get(title.title_id, 0)
            if position >= title.duration_ms - HEARTBEAT_MS:
                position = 0
            outcome = yield from playback(
                world, user, profile_id, device, title, now, position, watch
            )
            now = outcome.end_ms + 1
            resume[title.title_id] = outcome.position_ms
            if outcome.reason == "startup_error" and random() < _P_RETRY:
                retry = title
                now += 1_000 + int(random() * 5_000)
                continue
            done += 1
            if outcome.reason == "abandoned":
                break
            if world.interactions_per_playback_event > 0.0:
                now = yield from feedback(world, user, profile_id, device, now, title)
            now += 2_000 + int(random() * 20_000)
        now += _session_gap_ms(world)
