"""Dashboard sign-in helpers: where a sign-in may send the browser, and the forms' token."""

from __future__ import annotations

import pytest

from service.web._auth import csrf_token, local_path


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/experiments/exp_1?threshold=0.9", "/experiments/exp_1?threshold=0.9"),
        ("/schedules", "/schedules"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("experiments", "/"),
    ],
)
def test_sign_in_only_goes_to_paths_of_this_site(target: str | None, expected: str) -> None:
    assert local_path(target) == expected


def test_the_form_token_is_tied_to_the_session() -> None:
    assert csrf_token("rhs_a") == csrf_token("rhs_a")
    assert csrf_token("rhs_a") != csrf_token("rhs_b")
    assert "rhs_a" not in csrf_token("rhs_a") and len(csrf_token("rhs_a")) == 64
