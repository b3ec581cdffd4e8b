"""The themes a deck can be drawn in, for the page's theme pickers and for API clients."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency, Provide

from presto_deck.api.auth import provide_user_id
from presto_deck.api.schemas import ThemeList, ThemeSummary
from presto_deck.domain.themes import ThemeBook


@get(
    "/api/v1/themes",
    summary="The themes a deck can be drawn in, the default first",
    tags=["themes"],
    dependencies={"user_id": Provide(provide_user_id)},
    sync_to_thread=False,
)
def list_themes(user_id: NamedDependency[str], themes: NamedDependency[ThemeBook]) -> ThemeList:
    del user_id  # signed in, as for every API route
    return ThemeList(items=[ThemeSummary.of(theme) for theme in themes.values()])
