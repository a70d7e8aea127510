"""Simulated browsing: rows of impressions, hovers, searches, list edits and feedback."""

from __future__ import annotations

from collections.abc import Callable, Generator

from runtime.generator.catalogue import Title
from runtime.generator.population import Device, User
from runtime.generator.world import INTERACTIONS, Tagged, World

ROW_NAMES: tuple[str, ...] = (
    "Continue Watching",
    "Trending Now",
    "Top 10 Today",
    "New Releases",
    "Because You Watched",
    "Popular in Your Country",
    "My List",
    "Hidden Gems",
)
SEARCH_ROW = "Search Results"

_P_SEARCH = 0.08
_P_HOVER = 0.12
_P_ADD_TO_LIST = 0.015


def _emitter(world: World, user: User, profile_id: str, device: Device) -> Callable[..., Tagged]:
    """Return a function that builds interaction events of one profile on one device."""
    new_id = world.ids.new
    user_id = user.user_id
    device_id = device.device_id
    device_type = device.device_type
    country = device.country

    def event(
        event_type: str,
        t: int,
        title: Title | None = None,
        row_name: str | None = None,
        row_index: int | None = None,
        rank: int | None = None,
        search_query: str | None = None,
        rating: int | None = None,
    ) -> Tagged:
        return INTERACTIONS, {
            "event_id": new_id(),
            "user_id": user_id,
            "profile_id": profile_id,
            "device_id": device_id,
            "device_type": device_type,
            "country": country,
            "event_type": event_type,
            "event_time_ms": t,
            "title_id": title.title_id if title is not None else None,
            "genre": title.genre if title is not None else None,
            "row_name": row_name,
            "row_index": row_index,
            "rank": rank,
            "search_query": search_query,
            "rating": rating,
        }

    return event


def browse(
    world: World,
    user: User,
    profile_id: str,
    device: Device,
    t_ms: int,
    budget: int,
    chosen: Title,
) -> Generator[Tagged, None, int]:
    """Yield about ``budget`` interaction events, ending in a ``play_intent`` on ``chosen``.

    The profile scrolls rows of titles (one ``impression`` per title shown),
    hovers over some, sometimes searches or adds to its list, and finally shows
    intent to play ``chosen`` from the last row it saw.

    Args:
        world: shared run state.
        user: the account.
        profile_id: the profile browsing.
        device: the device used.
        t_ms: event time of the first interaction.
        budget: roughly how many events to emit; at least the ``play_intent``.
        chosen: the title the browse leads to.

    Returns:
        The event time of the ``play_intent`` (as the generator's return value).
    """
    rng = world.rng
    random = rng.random
    event = _emitter(world, user, profile_id, device)
    now = t_ms
    emitted = 0
    row_index = 0
    while True:
        if random() < _P_SEARCH:
            query = chosen.title_id if random() < 0.5 else chosen.genre
            yield event("search", now, search_query=query[: 1 + int(random() * len(query))])
            emitted += 1
            now += 800 + int(random() * 2_000)
            row_name = SEARCH_ROW
            row_index = 0
        else:
            row_name = ROW_NAMES[int(random() * len(ROW_NAMES))]
        row = world.pick_titles(user, min(6 + int(random() * 7), max(1, budget - emitted)))
        last = emitted + len(row) + 1 >= budget
        if last:
            row[int(random() * len(row))] = chosen
        for rank, title in enumerate(row):
            yield event("impression", now, title, row_name, row_index, rank)
            emitted += 1
            now += 1 + int(random() * 40)
        for rank, title in enumerate(row):
            if random() < _P_HOVER and emitted + 1 < budget:
                now += 300 + int(random() * 2_500)
                yield event("hover", now, title, row_name, row_index, rank)
                emitted += 1
                if random() < _P_ADD_TO_LIST:
                    now += 200 + int(random() * 1_000)
                    yield event("add_to_list", now, title, row_name, row_index, rank)
                    emitted += 1
        if last:
            rank = row.index(chosen)
            now += 500 + int(random() * 3_000)
            yield event("play_intent", now, chosen, row_name, row_index, rank)
            return now
        row_index += 1
        now += 1_500 + int(random() * 4_000)


def feedback(
    world: World,
    user: User,
    profile_id: str,
    device: Device,
    t_ms: int,
    title: Title,
) -> Generator[Tagged, None, int]:
    """Maybe yield feedback on a title just watched: thumbs, a rating, a list removal.

    Args:
        world: shared run state.
        user: the account.
        profile_id: the profile that watched.
        device: the device used.
        t_ms: event time after the playback ended.
        title: the title watched.

    Returns:
        The event time after the feedback (as the generator's return value).
    """
    random = world.rng.random
    liked = title.genre in user.favourite_genres
    now = t_ms
    r = random()
    if r < 0.06:
        event = _emitter(world, user, profile_id, device)
        up = random() < (0.85 if liked else 0.45)
        yield event("thumbs_up" if up else "thumbs_down", now, title)
        now += 500 + int(random() * 3_000)
    elif r < 0.09:
        event = _emitter(world, user, profile_id, device)
        stars = 4 + int(random() * 2) if liked else 1 + int(random() * 4)
        yield event("rating", now, title, rating=stars)
        now += 500 + int(random() * 3_000)
    elif r < 0.10:
        event = _emitter(world, user, profile_id, device)
        yield event("remove_from_list", now, title, row_name="My List")
        now += 500 + int(random() * 3_000)
    return now
