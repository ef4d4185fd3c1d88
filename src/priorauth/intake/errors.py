"""The error every intake adapter raises for input it cannot read: all problems, each naming its field."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["IntakeError", "problems_from_validation", "format_loc"]


class IntakeError(ValueError):
    """Input that cannot be read. ``problems`` lists every problem as ``path: message``."""

    def __init__(self, origin: str, problems: list[str]):
        self.origin = origin
        self.problems = problems
        super().__init__(f"{origin}: " + "; ".join(problems))

    def report(self) -> str:
        lines = [f"{self.origin}: cannot be read ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''})"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def format_loc(loc: tuple, skip: tuple[str, ...] = ()) -> str:
    """('labs', 2, 'date') -> 'labs[2].date'; discriminator tags named in ``skip`` are left out."""
    out = ""
    previous: object = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in skip and isinstance(previous, int):
            pass  # the tag of a union member, right after its list index
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out or "(top level)"


_MESSAGES = {
    "missing": lambda e: "is required",
    "date_parsing": lambda e: f"{e['input']!r} is not a date",
    "date_from_datetime_parsing": lambda e: f"{e['input']!r} is not a date",
    "date_from_datetime_inexact": lambda e: f"{e['input']!r} is not a date (a time was given)",
    "date_type": lambda e: f"{e['input']!r} is not a date",
    "datetime_parsing": lambda e: f"{e['input']!r} is not a date and time",
    "float_parsing": lambda e: f"{e['input']!r} is not a number",
    "float_type": lambda e: f"{e['input']!r} is not a number",
    "int_parsing": lambda e: f"{e['input']!r} is not a whole number",
    "int_type": lambda e: f"{e['input']!r} is not a whole number",
    "int_from_float": lambda e: f"{e['input']!r} is not a whole number",
    "bool_parsing": lambda e: f"{e['input']!r} is not true or false",
    "bool_type": lambda e: f"{e['input']!r} is not true or false",
    "string_type": lambda e: f"{e['input']!r} is not text",
    "list_type": lambda e: f"{e['input']!r} is not a list",
    "dict_type": lambda e: f"{e['input']!r} is not a mapping",
    "model_type": lambda e: f"{e['input']!r} is not a mapping",
    "model_attributes_type": lambda e: f"{e['input']!r} is not a mapping",
    "tuple_type": lambda e: f"{e['input']!r} is not a list",
    "literal_error": lambda e: f"{e['input']!r} is not one of: {e['ctx']['expected']}",
    "greater_than_equal": lambda e: f"{e['input']!r} is below the minimum {e['ctx']['ge']}",
    "too_short": lambda e: f"{e['input']!r} has too few items",
    "too_long": lambda e: f"{e['input']!r} has too many items",
    "union_tag_invalid": lambda e: f"{e['input']!r} is not a valid entry",
}


def problems_from_validation(err: ValidationError, skip: tuple[str, ...] = ()) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        path = format_loc(tuple(e["loc"]), skip)
        make = _MESSAGES.get(e["type"])
        if make is not None:
            try:
                msg = make(e)
            except (KeyError, TypeError):
                msg = e["msg"]
        else:
            msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {msg}")
    return problems
