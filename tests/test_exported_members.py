from __future__ import annotations

import streaming_responses
import streaming_responses.testing


def test_all_is_a_sorted_tuple_of_exactly_the_public_names() -> None:
    assert isinstance(streaming_responses.__all__, tuple)
    assert list(streaming_responses.__all__) == sorted(streaming_responses.__all__)
    public = {
        name
        for name in dir(streaming_responses)
        if not name.startswith("_")
        and name != "annotations"
        and name != "testing"
        and not isinstance(getattr(streaming_responses, name), type(streaming_responses))
    }
    assert public == set(streaming_responses.__all__)


def test_every_public_name_has_a_docstring_and_claims_the_package() -> None:
    for name in streaming_responses.__all__:
        member = getattr(streaming_responses, name)
        assert member.__doc__, name
        assert member.__module__.startswith("streaming_responses._"), name


def test_the_testing_module_lists_its_public_names() -> None:
    assert isinstance(streaming_responses.testing.__all__, tuple)
    for name in streaming_responses.testing.__all__:
        assert getattr(streaming_responses.testing, name).__doc__, name
