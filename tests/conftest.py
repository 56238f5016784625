import shutil

import pytest

from puhui.fund.files import write_fund
from puhui.synth.city import synth_city


@pytest.fixture(scope="session")
def small_city_dir(tmp_path_factory):
    """A small valid city (600 people, 2 years), written once per test session."""
    d = tmp_path_factory.mktemp("city")
    write_fund(synth_city(600, 2, seed=11), d)
    return d


@pytest.fixture
def city_copy(small_city_dir, tmp_path):
    """A copy of the small city that a test may break."""
    dst = tmp_path / "city"
    shutil.copytree(small_city_dir, dst)
    return dst
