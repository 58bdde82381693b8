"""The engine's error types: all are ValueError, each names what is at fault."""

from __future__ import annotations


class EngineError(ValueError):
    """Base of the engine's user-facing errors."""


class ParamError(EngineError):
    """A layer parameter is missing, of the wrong kind or out of range."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class ShapeError(EngineError):
    """A layer cannot take the shape it is given; `param` names the parameter at fault, if any;
    `input_index` (0-based) the input the message names as wrong, for a layer of several.
    `fix` is one quick fix, or `fixes` several alternatives (the preferred one first)."""

    def __init__(self, message: str, param: str | None = None, fix: object = None,
                 input_index: int | None = None, fixes: tuple | list = ()):
        super().__init__(message)
        assert fix is None or not fixes, "pass fix or fixes, not both"
        self.param = param
        self.fixes = tuple(fixes) if fixes else (() if fix is None else (fix,))
        self.input_index = input_index

    @property
    def fix(self):
        """The preferred fix, or None."""
        return self.fixes[0] if self.fixes else None


class GraphError(EngineError):
    """The graph's structure is wrong (cycle, dangling edge, no input, ...)."""


class DataError(EngineError):
    """A dataset file is missing, malformed or does not fit the network."""


class ProjectError(EngineError):
    """A project file cannot be read or written."""


class TrainingError(EngineError):
    """Training stopped on a problem (a NaN loss, ...)."""


class ModelNotFoundError(ProjectError):
    """A MODEL spec names no file, example or template (the command line's usage error, exit 2)."""
