"""One simulated playback: startup, steady play with a buffer and ABR, and its end.

The player keeps a buffer of downloaded content. Bandwidth follows a
mean-reverting random walk in log space; adaptive bitrate (ABR) steps down when
the bitrate nears the bandwidth and up when there is room. Stalls
(``rebuffer_start``/``rebuffer_end``) happen when the buffer drains or at
random, more often on a degraded CDN. Events of one playback have strictly
increasing event times; the playhead only moves backwards at a ``seek``.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

from runtime.generator.catalogue import Title
from runtime.generator.population import BITRATE_LADDER, Device, User
from runtime.generator.world import PLAYBACK, Tagged, World

HEARTBEAT_MS = 10_000

STARTUP_ERRORS: tuple[str, ...] = (
    "E_MANIFEST_TIMEOUT",
    "E_DRM_LICENSE",
    "E_CDN_HTTP_5XX",
    "E_DECODER_INIT",
)
PLAYBACK_ERRORS: tuple[str, ...] = ("E_NETWORK_LOST", "E_CDN_HTTP_5XX", "E_DECODER_FAILURE")

# Per ~10 s step of play, before CDN degradation.
_P_ERROR = 0.0004
_P_SEEK = 0.004
_P_PAUSE = 0.006
_P_STALL = 0.006
_P_STARTUP_FAILURE = 0.02
_P_ABANDON = 0.08
_BUFFER_CAP_MS = 40_000
_RESUME_BUFFER_MS = 2_000
_LOG_STARTUP_MEDIAN = math.log(900.0)


@dataclass(frozen=True, slots=True)
class PlayOutcome:
    """How a playback ended.

    Args:
        reason: ``"stop"``, ``"error"``, ``"startup_error"`` or ``"abandoned"``.
        end_ms: event time of its last event.
        position_ms: playhead position at the end.
    """

    reason: str
    end_ms: int
    position_ms: int


def _target_index(bandwidth: float, share: float, max_index: int) -> int:
    """Highest ladder rung not above ``share`` of ``bandwidth``, capped by the device."""
    limit = share * bandwidth
    index = 0
    for i in range(1, max_index + 1):
        if BITRATE_LADDER[i] <= limit:
            index = i
        else:
            break
    return index


def playback(
    world: World,
    user: User,
    profile_id: str,
    device: Device,
    title: Title,
    t_ms: int,
    position_ms: int,
    watch_ms: int,
) -> Generator[Tagged, None, PlayOutcome]:
    """Yield ``("playback", event)`` pairs of one play of ``title``, starting at ``t_ms``.

    Args:
        world: shared run state (random stream, ids, CDN health).
        user: the account.
        profile_id: the profile watching.
        device: the device playing.
        title: what is played.
        t_ms: event time of the ``start`` event.
        position_ms: playhead at start (a resume point or 0).
        watch_ms: how much content the viewer means to watch.

    Returns:
        The :class:`PlayOutcome` (as the generator's return value).
    """
    rng = world.rng
    random = rng.random
    gauss = rng.gauss
    new_id = world.ids.new
    degradation = world.degradation
    degradable = world.may_degrade(device.cdn)
    user_id = user.user_id
    device_id = device.device_id
    device_type = device.device_type
    app_version = device.app_version
    country = device.country
    isp = device.isp
    cdn = device.cdn
    title_id = title.title_id
    duration = title.duration_ms
    playback_id = new_id()

    def event(
        event_type: str,
        t: int,
        pos: int,
        bitrate: int,
        buffer: int,
        error_code: str | None = None,
        seek_from: int | None = None,
    ) -> Tagged:
        return PLAYBACK, {
            "event_id": new_id(),
            "user_id": user_id,
            "profile_id": profile_id,
            "device_id": device_id,
            "device_type": device_type,
            "app_version": app_version,
            "country": country,
            "isp": isp,
            "cdn": cdn,
            "title_id": title_id,
            "playback_id": playback_id,
            "event_type": event_type,
            "event_time_ms": t,
            "position_ms": pos,
            "bitrate_kbps": bitrate,
            "buffer_ms": buffer,
            "error_code": error_code,
            "seek_from_ms": seek_from,
        }

    max_index = device.max_bitrate_index
    base_log_bw = device.log_bandwidth
    log_bw = base_log_bw + gauss(0.0, 0.2)
    factors = degradation(cdn, t_ms)
    mult, div = factors if factors is not None else (1.0, 1.0)
    bandwidth = math.exp(log_bw) / div
    index = _target_index(bandwidth, 0.5, max_index)
    pos = position_ms
    now = t_ms
    yield event("start", now, pos, BITRATE_LADDER[index], 0)

    # Startup is slower on slow networks and on a degraded CDN.
    startup = math.exp(gauss(_LOG_STARTUP_MEDIAN, 0.45)) * (1.0 + 2000.0 / bandwidth)
    now += max(50, int(startup * math.sqrt(mult)))
    if random() < min(0.5, _P_STARTUP_FAILURE * mult):
        code = rng.choice(STARTUP_ERRORS)
        yield event("error", now, pos, BITRATE_LADDER[index], 0, code)
        return PlayOutcome("startup_error", now, pos)
    buffer = 2_000 + int(random() * 2_000)
    yield event("play", now, pos, BITRATE_LADDER[index], buffer)

    abandon = random() < _P_ABANDON
    watch_left = max(1, min(watch_ms, duration - pos))
    while True:
        content = min(HEARTBEAT_MS - 400 + int(random() * 800), watch_left, duration - pos)
        if degradable:
            factors = degradation(cdn, now)
            mult, div = factors if factors is not None else (1.0, 1.0)
        # Sum of three uniforms: a cheap near-normal step with standard deviation 0.12.
        log_bw += (random() + random() + random() - 1.5) * 0.24 + 0.1 * (base_log_bw - log_bw)
        bandwidth = math.exp(log_bw) / div
        played = 0
        if content > 3_000:
            # ABR decides at the start of the step, with hysteresis.
            bitrate = BITRATE_LADDER[index]
            if bitrate > 0.9 * bandwidth and index > 0:
                new_index = min(index - 1, _target_index(bandwidth, 0.7, max_index))
            elif index < max_index and BITRATE_LADDER[index + 1] <= 0.6 * bandwidth:
                new_index = _target_index(bandwidth, 0.6, max_index)
            else:
                new_index = index
            step = 1 + int(random() * 1_500)
            now += step
            pos += step
            played += step
            if new_index != index:
                index = new_index
                yield event("bitrate_change", now, pos, BITRATE_LADDER[index], buffer)
            bitrate = BITRATE_LADDER[index]
            rate = bandwidth / bitrate
            left = content - played
            p_error = _P_ERROR * mult
            p_stall = _P_STALL * mult
            r = random()
            if rate < 1.0 and buffer / (1.0 - rate) < left:
                drain = int(buffer / (1.0 - rate))
            else:
                drain = -1
            if r < p_error + _P_SEEK + _P_PAUSE + p_stall or drain >= 0:
                step = drain if drain >= 0 else 1 + int(random() * (left - 2))
                step = max(1, min(step, left - 1))
                now += step
                pos += step
                played += step
                if r < p_error:
                    code = rng.choice(PLAYBACK_ERRORS)
                    yield event("error", now, pos, bitrate, buffer, code)
                    return PlayOutcome("error", now, pos)
                if r < p_error + _P_SEEK:
                    target = pos + int((random() * 15.0 - 5.0) * 60_000)
                    target = max(0, min(target, duration - 1))
                    yield event("seek", now, target, bitrate, 0, None, pos)
                    pos = target
                    buffer = _RESUME_BUFFER_MS
                    content = played + min(content - played, duration - pos)
                elif r < p_error + _P_SEEK + _P_PAUSE:
                    yield event("pause", now, pos, bitrate, buffer)
                    now += 2_000 + int(random() * random() * 120_000)
                    yield event("resume", now, pos, bitrate, buffer)
                else:
                    yield event("rebuffer_start", now, pos, bitrate, 0)
                    if drain >= 0:
                        stall = min(30_000, int(_RESUME_BUFFER_MS / max(rate, 0.07)))
                    else:
                        stall = int((300 + random() * random() * 6_000) * math.sqrt(mult))
                    now += max(1, stall)
                    buffer = _RESUME_BUFFER_MS
                    yield event("rebuffer_end", now, pos, bitrate, buffer)
            buffer = max(0, min(_BUFFER_CAP_MS, buffer + int((rate - 1.0) * (content - played))))
        rest = content - played
        now += max(1, rest)
        pos += rest
        watch_left -= content
        if watch_left <= 0 or pos >= duration:
            if abandon:
                return PlayOutcome("abandoned", now, pos)
            yield event("stop", now, pos, BITRATE_LADDER[index], buffer)
            return PlayOutcome("stop", now, pos)
        yield event("heartbeat", now, pos, BITRATE_LADDER[index], buffer)
