"""The command line: every subcommand (add_commands / cmd_*); library code never imports it."""

from .main import command_names, main

__all__ = ["command_names", "main"]
