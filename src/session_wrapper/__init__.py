"""session-wrapper: an SSH login wrapper that asks a TACACS+ agent before every exec."""

__version__ = "0.1.0"
