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
    `input_index` (0-based) the input the message names as wrong, for a layer of several."""

    def __init__(self, message: str, param: str | None = None, fix: object = None,
                 input_index: int | None = None):
        super().__init__(message)
        self.param = param
        self.fix = fix
        self.input_index = input_index


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
