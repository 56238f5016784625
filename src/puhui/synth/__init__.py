"""The synthetic city: people, health, deaths, bills settled by the basic tier, and
enrolment in a Huhuibao-style product. Parameters: actuarial/assumptions/synth-city.toml.
"""
