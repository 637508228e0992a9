"""Seeded synthetic personas (name, gender, age, job, MBTI, short bio), as in Kang et al. (2025)."""

from __future__ import annotations

import random

from faker import Faker

from causalguard.roles.role import Role

MBTI_TYPES = [a + b + c + d for a in "EI" for b in "SN" for c in "TF" for d in "JP"]
HOBBIES = [
    "gardening",
    "chess",
    "hiking",
    "cooking for friends",
    "playing the violin",
    "woodworking",
    "long-distance running",
    "painting landscapes",
    "volunteering at a shelter",
    "reading history",
    "fishing",
    "video games",
    "photography",
    "rock climbing",
    "knitting",
    "birdwatching",
    "amateur astronomy",
    "salsa dancing",
    "restoring old cars",
    "baking bread",
]
BIO_TEMPLATES = [
    "grew up in {city}, now works as {job_a}, and spends weekends {hobby}",
    "lives in {city} with {household}, works as {job_a}, and is known for {hobby}",
    "moved to {city} {years} years ago, works as {job_a}, and unwinds by {hobby}",
    "is {job_a} from {city} who loves {hobby} and {household_phrase}",
]
HOUSEHOLDS = ["a partner and two children", "an old dog", "three roommates", "their parents", "no one"]


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def generate_personas(n: int, seed: int = 0, locale: str = "en_US") -> list[Role]:
    """``n`` distinct personas, identical for the same ``(n, seed, locale)`` on any machine."""
    if n < 0:
        raise ValueError("n must be >= 0")
    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = random.Random(seed)
    personas = []
    for index in range(n):
        gender = rng.choice(["female", "male"])
        name = fake.name_female() if gender == "female" else fake.name_male()
        age = rng.randint(19, 78)
        job = fake.job().split(",")[0].strip().lower()
        mbti = rng.choice(MBTI_TYPES)
        household = rng.choice(HOUSEHOLDS)
        bio = rng.choice(BIO_TEMPLATES).format(
            city=fake.city(),
            job_a=_article(job),
            hobby=rng.choice(HOBBIES),
            household=household,
            household_phrase=f"lives with {household}",
            years=rng.randint(2, 30),
        )
        system = (
            f"FYI, here is your trait: Name: {name}. Gender: {gender}. Age: {age}. Job: {job}. "
            f"MBTI: {mbti}. Bio: {name.split()[0]} {bio}. Answer every question as {name}."
        )
        description = f"{name}, a {age}-year-old {job} ({mbti}) who {bio},"
        personas.append(Role(id=f"persona:{index:03d}", kind="persona", system_prompt=system, description=description))
    return personas
