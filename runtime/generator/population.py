"""The simulated viewers: accounts with profiles, devices, networks and tastes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from runtime.generator.catalogue import GENRES
from runtime.generator.config import CDNS, GeneratorConfig

#: Bitrate ladder of the simulated encodes, in kbit/s, lowest first.
BITRATE_LADDER: tuple[int, ...] = (
    235, 375, 560, 750, 1050, 1750, 2350, 3000, 4300, 5800, 8000, 16000
)  # fmt: skip

# (ISO-2 country, weight): where the accounts live.
_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 30.0), ("BR", 9.0), ("GB", 7.0), ("DE", 6.0), ("FR", 5.0), ("IN", 6.0),
    ("MX", 5.0), ("CA", 4.0), ("JP", 4.0), ("ES", 3.0), ("IT", 3.0), ("KR", 3.0),
    ("AU", 3.0), ("NL", 2.0), ("SE", 1.0),
)  # fmt: skip
_ISPS_PER_COUNTRY = 3

# device type -> (weight, app versions, highest ladder index, median bandwidth kbit/s)
_DEVICE_TYPES: dict[str, tuple[float, tuple[str, ...], int, float]] = {
    "tv": (0.40, ("7.4.0", "7.3.2", "7.2.9"), len(BITRATE_LADDER) - 1, 14_000.0),
    "mobile": (0.25, ("16.1.0", "16.0.3", "15.9.1"), 7, 4_500.0),
    "tablet": (0.10, ("16.1.0", "16.0.3"), 8, 6_000.0),
    "web": (0.15, ("5.12.1", "5.11.0"), 9, 9_000.0),
    "console": (0.10, ("3.8.0", "3.7.5"), len(BITRATE_LADDER) - 1, 16_000.0),
}


@dataclass(frozen=True, slots=True)
class Device:
    """One device of an account and the network it plays over.

    Args:
        device_id: stable id, ``<user_id>-d<n>``.
        device_type: one of tv, mobile, tablet, web, console.
        app_version: player application version.
        country: ISO-2 country code.
        isp: internet service provider.
        cdn: CDN that serves this ISP in this country.
        max_bitrate_index: highest index of :data:`BITRATE_LADDER` the device plays.
        log_bandwidth: natural log of the device's typical bandwidth in kbit/s.
    """

    device_id: str
    device_type: str
    app_version: str
    country: str
    isp: str
    cdn: str
    max_bitrate_index: int
    log_bandwidth: float


@dataclass(frozen=True, slots=True)
class User:
    """One account.

    Args:
        index: position in the population, used to break ties deterministically.
        user_id: account id, ``u000001`` style.
        profiles: profile ids of the account.
        devices: one to three devices.
        favourite_genres: genres the account prefers when choosing titles.
    """

    index: int
    user_id: str
    profiles: tuple[str, ...]
    devices: tuple[Device, ...]
    favourite_genres: tuple[str, ...]


def _cdn_map(rng: random.Random) -> dict[tuple[str, str], str]:
    """Assign a CDN to every (country, ISP), using every CDN in every big market."""
    mapping: dict[tuple[str, str], str] = {}
    for country, _ in _COUNTRIES:
        offset = rng.randrange(len(CDNS))
        for i in range(_ISPS_PER_COUNTRY):
            isp = f"{country.lower()}-isp-{i + 1}"
            mapping[(country, isp)] = CDNS[(offset + i) % len(CDNS)]
    return mapping


def build_population(config: GeneratorConfig) -> tuple[User, ...]:
    """Build the accounts a generator with ``config`` simulates.

    It depends only on ``config.seed`` and ``config.users``.

    Args:
        config: the generator configuration.

    Returns:
        ``config.users`` users with ids ``u000001``, ``u000002``, ...
    """
    rng = random.Random(f"shoal-generator:{config.seed}:population")
    cdn_of = _cdn_map(rng)
    countries = [c for c, _ in _COUNTRIES]
    country_weights = [w for _, w in _COUNTRIES]
    type_names = list(_DEVICE_TYPES)
    type_weights = [spec[0] for spec in _DEVICE_TYPES.values()]
    width = max(6, len(str(config.users)))
    users = []
    for index in range(config.users):
        user_id = f"u{index + 1:0{width}d}"
        country = rng.choices(countries, country_weights)[0]
        isp = f"{country.lower()}-isp-{rng.randrange(_ISPS_PER_COUNTRY) + 1}"
        # A household's line quality is shared by its devices.
        line_quality = rng.gauss(0.0, 0.35)
        devices = []
        for n in range(rng.choice((1, 1, 2, 2, 3))):
            device_type = rng.choices(type_names, type_weights)[0]
            _, versions, max_index, median_kbps = _DEVICE_TYPES[device_type]
            devices.append(
                Device(
                    device_id=f"{user_id}-d{n + 1}",
                    device_type=device_type,
                    app_version=rng.choice(versions),
                    country=country,
                    isp=isp,
                    cdn=cdn_of[(country, isp)],
                    max_bitrate_index=max_index,
                    log_bandwidth=math.log(median_kbps) + line_quality + rng.gauss(0.0, 0.15),
                )
            )
        profiles = tuple(f"{user_id}-p{n + 1}" for n in range(rng.randint(1, 4)))
        favourites = tuple(rng.sample(GENRES, rng.randint(1, 3)))
        users.append(User(index, user_id, profiles, tuple(devices), favourites))
    return tuple(users)
